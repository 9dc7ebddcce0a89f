-- Birthdate, biography and city are optional: the public spec requires none of them and the
-- clients generated from it leave unset fields out. A user who gave none has none, and the
-- field is left out of their profile (never sent as null). An empty text stored before this
-- migration meant "not given", so it becomes null too.
alter table users
    alter column birthdate drop not null,
    alter column biography drop not null,
    alter column biography drop default,
    alter column city drop not null,
    alter column city drop default;
update users set biography = null where biography = '';
update users set city = null where city = '';
