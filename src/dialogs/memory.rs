//! Dialogs in Tarantool (`DIALOG_STORE=tarantool`): one call of a stored procedure of
//! `deploy/tarantool/dialogs.lua` per request, keyed by the database whose users they are (see
//! `db::database_number`) and the same dialog key as in PostgreSQL.

use chrono::{DateTime, Utc};
use rmpv::Value;

use super::sql::{Mark, Page, Stored, UnreadSide};
use super::types::{DialogKey, Message, MessageText, LIST_MAX_BYTES};
use crate::ids::UserId;
use crate::tarantool::{Arg, Tarantool, TarantoolError};

/// Stores a message; its number in its dialog and its sender's messages in the dialog now.
#[tracing::instrument(name = "tarantool.dialog_send", skip(store, text))]
pub async fn send_message(
    store: &Tarantool,
    database: i64,
    key: DialogKey,
    from: UserId,
    to: UserId,
    text: &MessageText,
) -> Result<Stored, TarantoolError> {
    let values = store
        .call(
            "dialog_send",
            &[
                Arg::Int(database),
                Arg::Int(key.id),
                Arg::Int(key.low.0),
                Arg::Int(key.high.0),
                Arg::Int(from.0),
                Arg::Int(to.0),
                Arg::Str(text.as_str()),
            ],
        )
        .await?;
    let id = values
        .first()
        .and_then(Value::as_i64)
        .ok_or_else(|| unexpected("dialog_send", &values))?;
    // A store still on the procedure before answers the number alone.
    let sent = match values.get(1) {
        None => None,
        Some(value) => Some(
            value
                .as_i64()
                .ok_or_else(|| unexpected("dialog_send", &values))?,
        ),
    };
    Ok(Stored { id, sent })
}

/// A page of the dialog, newest first: up to `limit` messages, of those the ones that start
/// within `LIST_MAX_BYTES` of text.
#[tracing::instrument(name = "tarantool.dialog_list", skip(store))]
pub async fn list_messages(
    store: &Tarantool,
    database: i64,
    key: DialogKey,
    limit: i64,
    page: Page,
) -> Result<Vec<Message>, TarantoolError> {
    let (before, offset) = page.bounds();
    let values = store
        .call(
            "dialog_list",
            &[
                Arg::Int(database),
                Arg::Int(key.id),
                Arg::Int(key.low.0),
                Arg::Int(key.high.0),
                Arg::Int(before),
                Arg::Int(limit),
                Arg::Int(offset),
                Arg::Int(LIST_MAX_BYTES),
            ],
        )
        .await?;
    let rows = match values.first() {
        Some(Value::Array(rows)) => rows,
        _ => return Err(unexpected("dialog_list", &values)),
    };
    rows.iter()
        .map(|row| message(row).ok_or_else(|| unexpected("dialog_list", &values)))
        .collect()
}

/// Raises `reader`'s read mark of the dialog (see `dialog_read`); the mark now, whether this
/// call raised it and how many of the other's messages it covers, or `None` when the dialog has
/// no message yet.
#[tracing::instrument(name = "tarantool.dialog_read", skip(store))]
pub async fn mark_read(
    store: &Tarantool,
    database: i64,
    key: DialogKey,
    reader: UserId,
    up_to: i64,
) -> Result<Option<Mark>, TarantoolError> {
    let reader_is_low = Value::Boolean(reader == key.low);
    let values = store
        .call(
            "dialog_read",
            &[
                Arg::Int(database),
                Arg::Int(key.id),
                Arg::Int(key.low.0),
                Arg::Int(key.high.0),
                Arg::Value(&reader_is_low),
                Arg::Int(up_to),
            ],
        )
        .await?;
    let now = match values.first() {
        Some(Value::Nil) | None => return Ok(None),
        Some(value) => value
            .as_i64()
            .ok_or_else(|| unexpected("dialog_read", &values))?,
    };
    // A store still on a procedure that returns the mark alone: told as raised, as before.
    let raised = match values.get(1) {
        None => true,
        Some(value) => value
            .as_bool()
            .ok_or_else(|| unexpected("dialog_read", &values))?,
    };
    let seen = match values.get(2) {
        None => None,
        Some(value) => Some(
            value
                .as_i64()
                .ok_or_else(|| unexpected("dialog_read", &values))?,
        ),
    };
    Ok(Some(Mark { now, raised, seen }))
}

/// Both sides of one dialog (none when it has no message yet): the first dialogs from its key
/// on, of which only its pair's are kept (another pair may share the key).
pub async fn unread_sides_of(
    store: &Tarantool,
    database: i64,
    key: DialogKey,
) -> Result<Vec<UnreadSide>, TarantoolError> {
    let (sides, _) = unread_sides(store, database, key.id.saturating_sub(1), 4).await?;
    let pair = |side: &UnreadSide| {
        (side.user.min(side.other), side.user.max(side.other)) == (key.low.0, key.high.0)
    };
    Ok(sides.into_iter().filter(pair).collect())
}

/// Both sides of up to `limit` dialogs after the key `after` (see `dialog_unread_sides`), and
/// the key to continue after.
#[tracing::instrument(name = "tarantool.dialog_unread_sides", skip(store))]
pub async fn unread_sides(
    store: &Tarantool,
    database: i64,
    after: i64,
    limit: i64,
) -> Result<(Vec<UnreadSide>, Option<i64>), TarantoolError> {
    let values = store
        .call(
            "dialog_unread_sides",
            &[Arg::Int(database), Arg::Int(after), Arg::Int(limit)],
        )
        .await?;
    let rows = match values.first() {
        Some(Value::Array(rows)) => rows,
        _ => return Err(unexpected("dialog_unread_sides", &values)),
    };
    let mut sides = Vec::with_capacity(rows.len() * 2);
    let mut last = None;
    for row in rows {
        let (dialog, both) =
            dialog_sides(row).ok_or_else(|| unexpected("dialog_unread_sides", &values))?;
        last = Some(dialog);
        sides.extend(both.into_iter().flatten());
    }
    let next = if rows.len() as i64 == limit {
        last
    } else {
        None
    };
    Ok((sides, next))
}

/// `{dialog_id, low, high, sent_low, sent_high, seen_low, seen_high}` as the dialog's key and
/// its two sides (each left out when nothing was sent to it).
fn dialog_sides(row: &Value) -> Option<(i64, [Option<UnreadSide>; 2])> {
    let fields = row.as_array()?;
    let int = |i: usize| fields.get(i).and_then(Value::as_i64);
    let (low, high) = (int(1)?, int(2)?);
    let side = |user, other, sent: i64, seen: i64| {
        (sent > 0).then_some(UnreadSide {
            user,
            other,
            sent,
            seen,
        })
    };
    // Low reads what high sent, and the other way round.
    Some((
        int(0)?,
        [
            side(low, high, int(4)?, int(5)?),
            side(high, low, int(3)?, int(6)?),
        ],
    ))
}

/// The version of `dialogs.lua`'s procedures this server speaks: 2 since they keep the unread
/// counters' counts.
pub const PROCEDURES_VERSION: i64 = 2;

/// Whether the store serves the procedures this server calls: an older `dialogs.lua` (no
/// `dialog_version`, or a lower one) would answer in shapes this server cannot count from.
pub async fn check_version(store: &Tarantool) -> Result<(), TarantoolError> {
    let older = || {
        TarantoolError::Unavailable(format!(
            "tarantool runs a dialogs.lua older than this server's (procedures version \
             {PROCEDURES_VERSION}): restart it with this version's deploy/tarantool/dialogs.lua"
        ))
    };
    match store.call("dialog_version", &[]).await {
        Ok(values) if values.first().and_then(Value::as_i64) >= Some(PROCEDURES_VERSION) => Ok(()),
        Ok(_) => Err(older()),
        Err(TarantoolError::Server { code: 33, .. }) => Err(older()),
        Err(e) => Err(e),
    }
}

/// A stored message, `{database, dialog_id, low, high, id, sender, recipient, text,
/// created_at µs}`, as the API's message.
fn message(row: &Value) -> Option<Message> {
    let fields = row.as_array()?;
    let int = |i: usize| fields.get(i).and_then(Value::as_i64);
    Some(Message {
        id: int(4)?.to_string(),
        from: int(5)?.to_string(),
        to: int(6)?.to_string(),
        text: fields.get(7)?.as_str()?.to_owned(),
        created_at: DateTime::<Utc>::from_timestamp_micros(int(8)?)?,
    })
}

fn unexpected(function: &str, values: &[Value]) -> TarantoolError {
    TarantoolError::Protocol(format!("{function} returned {values:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dialog_row_becomes_its_two_sides() {
        // 42 (low) has sent nothing; 43 has sent 4, of which 42 has seen 2.
        let row = Value::Array(vec![
            (-5).into(),
            42.into(),
            43.into(),
            0.into(),
            4.into(),
            2.into(),
            0.into(),
        ]);
        let (dialog, [low, high]) = dialog_sides(&row).unwrap();
        assert_eq!(dialog, -5);
        assert_eq!(
            low,
            Some(UnreadSide {
                user: 42,
                other: 43,
                sent: 4,
                seen: 2
            })
        );
        assert_eq!(high, None, "nothing sent to 43");
    }

    #[test]
    fn a_row_becomes_the_apis_message() {
        let row = Value::Array(vec![
            77.into(),
            (-5).into(),
            42.into(),
            43.into(),
            3.into(),
            42.into(),
            43.into(),
            "привет".into(),
            1_796_226_835_029_569i64.into(),
        ]);
        let m = message(&row).unwrap();
        assert_eq!(
            (m.id.as_str(), m.from.as_str(), m.to.as_str()),
            ("3", "42", "43")
        );
        assert_eq!(m.text, "привет");
        assert_eq!(m.created_at.timestamp_micros(), 1_796_226_835_029_569);
        assert!(message(&Value::Array(vec![3.into()])).is_none());
    }
}
