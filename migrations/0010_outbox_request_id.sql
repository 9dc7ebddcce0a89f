-- The id of the request whose write recorded the event (x-request-id), carried in the headers of
-- the RabbitMQ message the relay publishes, so that the consumers' log lines name it too. Null
-- for rows written before this column.
alter table outbox add column request_id text;
