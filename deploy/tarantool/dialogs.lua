-- socialnet's dialogs in Tarantool (DIALOG_STORE=tarantool): the schema, and the stored
-- procedures the server calls, one call per request (and a bulk load for the lab). Run by
-- `tarantool dialogs.lua` (the native script scripts/stack/tarantool-local.sh, and the compose
-- service of docker-compose.dialogs.yml).
--
-- Memory (memtx) holds everything; every change is written to the write-ahead log before the
-- call returns (wal_mode 'write': a crash of the process loses nothing acknowledged; a power
-- loss may lose what the OS had not flushed, as 'fsync' would not), and a snapshot is taken
-- every hour, so a restart reads the last snapshot and replays the log after it.
--
-- Settings, from the environment:
--   TARANTOOL_LISTEN      host:port to listen on (default 127.0.0.1:3301)
--   TARANTOOL_DIR         where the log and snapshots go (default the current folder)
--   TARANTOOL_PASSWORD    password of the user `socialnet` (default socialnet)
--   TARANTOOL_MEMORY_MB   memory for the data (default 1024)
--   TARANTOOL_WAL_MODE    write (default), fsync or none

local fiber = require('fiber')

-- Everything but the port first: the data is loaded and the procedures below are defined before
-- the port listens (at the end of this file), so that no call ever finds them missing.
box.cfg({
    work_dir = os.getenv('TARANTOOL_DIR'),
    memtx_memory = (tonumber(os.getenv('TARANTOOL_MEMORY_MB')) or 1024) * 1024 * 1024,
    wal_mode = os.getenv('TARANTOOL_WAL_MODE') or 'write',
    checkpoint_interval = 3600,
    checkpoint_count = 2,
    log_level = 5,
})

box.once('socialnet-dialogs-v1', function()
    -- The same shape as PostgreSQL's dialogs and dialog_messages (migrations/0004_dialogs.sql),
    -- keyed first by the database whose users they are (the low half of its epoch, migration
    -- 0009: a dropped and recreated database, whose new users reuse the old ids, does not see
    -- the old dialogs), then by the dialog's key and its pair of users, so that two pairs
    -- sharing a key (a 64-bit hash) share nothing.
    local dialogs = box.schema.space.create('dialogs', {
        format = {
            { name = 'database', type = 'integer' },
            { name = 'dialog_id', type = 'integer' },
            { name = 'user_low', type = 'integer' },
            { name = 'user_high', type = 'integer' },
            { name = 'last_message_id', type = 'unsigned' },
        },
    })
    dialogs:create_index('primary', { parts = { 'database', 'dialog_id', 'user_low', 'user_high' } })
    local messages = box.schema.space.create('dialog_messages', {
        format = {
            { name = 'database', type = 'integer' },
            { name = 'dialog_id', type = 'integer' },
            { name = 'user_low', type = 'integer' },
            { name = 'user_high', type = 'integer' },
            { name = 'id', type = 'unsigned' },
            { name = 'sender_id', type = 'integer' },
            { name = 'recipient_id', type = 'integer' },
            { name = 'text', type = 'string' },
            -- Microseconds since 1970.
            { name = 'created_at', type = 'unsigned' },
        },
    })
    messages:create_index('primary', {
        parts = { 'database', 'dialog_id', 'user_low', 'user_high', 'id' },
    })

    box.schema.user.create('socialnet', { password = os.getenv('TARANTOOL_PASSWORD') or 'socialnet' })
    -- The procedures run with their owner's rights (setuid): the user may call them and do
    -- nothing else.
    for _, name in ipairs({ 'dialog_send', 'dialog_list', 'dialog_load', 'dialog_stats' }) do
        box.schema.func.create(name, { setuid = true })
        box.schema.user.grant('socialnet', 'execute', 'function', name)
    end
end)

box.once('socialnet-dialogs-v2', function()
    -- How far each party has read the dialog (PUT /dialog/{user_id}/read), as PostgreSQL's
    -- read_low and read_high (migration 0011): absent (0) on dialogs nobody has read yet.
    local format = box.space.dialogs:format()
    table.insert(format, { name = 'read_low', type = 'unsigned', is_nullable = true })
    table.insert(format, { name = 'read_high', type = 'unsigned', is_nullable = true })
    box.space.dialogs:format(format)
    for _, name in ipairs({ 'dialog_read', 'dialog_unread_sides' }) do
        box.schema.func.create(name, { setuid = true })
        box.schema.user.grant('socialnet', 'execute', 'function', name)
    end
end)

box.once('socialnet-dialogs-v3', function()
    box.schema.func.create('dialog_snapshot', { setuid = true })
    box.schema.user.grant('socialnet', 'execute', 'function', 'dialog_snapshot')
end)

box.once('socialnet-dialogs-v4', function()
    -- The unread counters' counts, as PostgreSQL's (migration 0012): how many messages each party
    -- has sent, and how many of the other's each party's mark covers (src/cache/unread.rs).
    local format = box.space.dialogs:format()
    for _, name in ipairs({ 'sent_low', 'sent_high', 'seen_low', 'seen_high' }) do
        table.insert(format, { name = name, type = 'unsigned', is_nullable = true })
    end
    box.space.dialogs:format(format)
    box.schema.func.create('dialog_version', { setuid = true })
    box.schema.user.grant('socialnet', 'execute', 'function', 'dialog_version')
end)

-- The counts of one dialog (`d`, its row), from its messages: {sent_low, sent_high, seen_low,
-- seen_high}.
local function counted(d)
    local read_low, read_high = d[6] or 0, d[7] or 0
    local c = { 0, 0, 0, 0 }
    for _, m in box.space.dialog_messages.index.primary:pairs(
        { d[1], d[2], d[3], d[4] }, { iterator = 'EQ' }
    ) do
        if m[6] == d[3] then
            c[1] = c[1] + 1
            if m[5] <= read_high then c[4] = c[4] + 1 end
        else
            c[2] = c[2] + 1
            if m[5] <= read_low then c[3] = c[3] + 1 end
        end
    end
    return c
end

-- The dialogs already there, counted from their messages, a thousand dialogs a transaction, and
-- marked done only once done (box.once marks its key before its function runs, so a start that
-- failed half way would not come back). A read-only instance (a replica) leaves it to its master.
if not box.info.ro and box.space._schema:get({ 'socialnet-dialogs-counted' }) == nil then
    local batch = {}
    local function flush()
        box.begin()
        for _, row in ipairs(batch) do
            box.space.dialogs:replace(row)
        end
        box.commit()
        batch = {}
    end
    for _, d in box.space.dialogs:pairs() do
        if d[10] == nil then
            local row = d:totable()
            -- Read marks not kept yet are none read (0).
            for i = #row + 1, 7 do
                row[i] = 0
            end
            local c = counted(d)
            row[8], row[9], row[10], row[11] = c[1], c[2], c[3], c[4]
            table.insert(batch, row)
            if #batch >= 1000 then flush() end
        end
    end
    flush()
    box.space._schema:put({ 'socialnet-dialogs-counted' })
end

-- Which procedures this script serves, for the server to check before it calls them: 2 since
-- the counts (the server refuses a store that answers less, or nothing).
function dialog_version()
    return 2
end

-- Takes a snapshot now (as the hourly checkpoint does), so that a restart reads it instead of
-- replaying the log written since the last one; returns the seconds it took. For operators
-- before a planned restart, and for the lab's restart timing.
function dialog_snapshot()
    local started = fiber.clock()
    box.snapshot()
    return fiber.clock() - started
end

-- Stores a message: the dialog's counter and its sender's count go up by one and the message is
-- kept under the new number, in one transaction; returns the number and the sender's count. The
-- commit returns once the log has it.
function dialog_send(database, dialog_id, low, high, sender, recipient, text)
    local key = { database, dialog_id, low, high }
    local by = sender == low and 8 or 9
    box.begin()
    local dialog = box.space.dialogs:get(key)
    local id, sent = 1, 1
    if dialog == nil then
        local row = { database, dialog_id, low, high, 1, 0, 0, 0, 0, 0, 0 }
        row[by] = 1
        box.space.dialogs:insert(row)
    else
        id = dialog[5] + 1
        sent = (dialog[by] or 0) + 1
        box.space.dialogs:update(key, { { '=', 5, id }, { '=', by, sent } })
    end
    box.space.dialog_messages:insert({
        database, dialog_id, low, high, id, sender, recipient, text, fiber.time64(),
    })
    box.commit()
    return id, sent
end

-- How many messages to the reader of a side (the low user when `to_low`) are numbered above
-- `from` and at most `to`.
local function to_reader_between(database, dialog_id, low, high, to_low, from, to)
    local reader = to_low and low or high
    local n = 0
    for _, m in box.space.dialog_messages.index.primary:pairs(
        { database, dialog_id, low, high, from }, { iterator = 'GT' }
    ) do
        if m[1] ~= database or m[2] ~= dialog_id or m[3] ~= low or m[4] ~= high or m[5] > to then
            break
        end
        if m[7] == reader then
            n = n + 1
        end
    end
    return n
end

-- A page of the dialog, newest first: messages numbered below `before`, skipping `offset` of
-- them, at most `limit`, and of those only the ones that start within `max_bytes` of text (at
-- least one; none given: no such bound), as stored ({database, dialog_id, low, high, id, sender,
-- recipient, text, created_at}: tuples go out as they are kept, with no copy into Lua tables).
-- The index is read backwards from the page's start; the dialog's messages come first, and
-- whatever follows them (the previous dialog's, when this one has fewer) is cut off the end.
function dialog_list(database, dialog_id, low, high, before, limit, offset, max_bytes)
    local page = box.space.dialog_messages.index.primary:select(
        { database, dialog_id, low, high, before },
        { iterator = 'LT', offset = offset, limit = limit }
    )
    local n = #page
    while n > 0 do
        local m = page[n]
        if m[1] == database and m[2] == dialog_id and m[3] == low and m[4] == high then
            break
        end
        page[n] = nil
        n = n - 1
    end
    if max_bytes ~= nil then
        local bytes = 0
        for i = 1, n do
            if bytes >= max_bytes then
                page[i] = nil
            else
                bytes = bytes + #page[i][8]
            end
        end
    end
    return page
end

-- Raises the reader's mark of how far they have read the dialog to `up_to`, clamped to the
-- dialog's last message; returns the mark now, whether this call raised it (a repeated mark
-- has no event to tell) and how many of the other party's messages it covers, or nil when the
-- dialog has no message yet. A raise counts only the messages it newly covers, and keeps the
-- sum: each message is counted once in the dialog's life. No yield between the read and the
-- update: concurrent marks cannot lower one another.
function dialog_read(database, dialog_id, low, high, reader_is_low, up_to)
    local key = { database, dialog_id, low, high }
    local dialog = box.space.dialogs:get(key)
    if dialog == nil then
        return box.NULL
    end
    local marks = { dialog[6] or 0, dialog[7] or 0 }
    local side = reader_is_low and 1 or 2
    -- A comparison, not math.min: a number from 2^47 up arrives as a 64-bit integer (cdata),
    -- which Lua's math functions refuse.
    local wanted = dialog[5]
    if up_to < wanted then
        wanted = up_to
    end
    local seen_field = reader_is_low and 10 or 11
    local seen = dialog[seen_field] or 0
    if wanted <= marks[side] then
        return marks[side], false, seen
    end
    seen = seen + to_reader_between(database, dialog_id, low, high, reader_is_low, marks[side], wanted)
    box.space.dialogs:update(key, { { '=', side + 5, wanted }, { '=', seen_field, seen } })
    return wanted, true, seen
end

-- For a rebuild of the unread counters: up to `limit` dialogs after the key `after`, each as
-- {dialog_id, low, high, sent_low, sent_high, seen_low, seen_high}: the counts kept on the row.
function dialog_unread_sides(database, after, limit)
    local out = {}
    for _, d in box.space.dialogs.index.primary:pairs({ database, after }, { iterator = 'GT' }) do
        if d[1] ~= database or #out >= limit then
            break
        end
        table.insert(out, { d[2], d[3], d[4], d[8] or 0, d[9] or 0, d[10] or 0, d[11] or 0 })
    end
    return out
end

-- Loads messages copied from PostgreSQL (`socialnet fake copy-dialogs`), each row {dialog_id,
-- low, high, id, sender, recipient, text, created_at}, replacing any with the same key, keeping
-- each dialog's counter at its highest number and counting each new message for its sender;
-- returns how many it took.
function dialog_load(database, rows)
    box.begin()
    for _, r in ipairs(rows) do
        local message = { database, r[1], r[2], r[3], r[4] }
        local new = box.space.dialog_messages:get(message) == nil
        box.space.dialog_messages:replace({ database, r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8] })
        local key = { database, r[1], r[2], r[3] }
        local by = r[5] == r[2] and 8 or 9
        local dialog = box.space.dialogs:get(key)
        if dialog == nil then
            local row = { database, r[1], r[2], r[3], r[4], 0, 0, 0, 0, 0, 0 }
            row[by] = 1
            box.space.dialogs:insert(row)
        else
            local changes = {}
            if dialog[5] < r[4] then
                table.insert(changes, { '=', 5, r[4] })
            end
            if new then
                table.insert(changes, { '=', by, (dialog[by] or 0) + 1 })
            end
            if #changes > 0 then
                box.space.dialogs:update(key, changes)
            end
        end
    end
    box.commit()
    return #rows
end

-- What the store holds: {messages, dialogs, bytes of tuples, bytes of indexes, bytes of the memory
-- arena in use}.
function dialog_stats()
    local messages, dialogs = box.space.dialog_messages, box.space.dialogs
    return {
        messages:len(),
        dialogs:len(),
        messages:bsize() + dialogs:bsize(),
        messages.index.primary:bsize() + dialogs.index.primary:bsize(),
        box.slab.info().arena_used,
    }
end

-- Now that every procedure is defined, take calls.
box.cfg({ listen = os.getenv('TARANTOOL_LISTEN') or '127.0.0.1:3301' })
