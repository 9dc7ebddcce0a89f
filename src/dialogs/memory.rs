//! Dialogs in Tarantool (`DIALOG_STORE=tarantool`): one call of a stored procedure of
//! `deploy/tarantool/dialogs.lua` per request, keyed by the database whose users they are (see
//! `db::database_number`) and the same dialog key as in PostgreSQL.

use chrono::{DateTime, Utc};
use rmpv::Value;

use super::sql::Page;
use super::types::{DialogKey, Message, MessageText};
use crate::ids::UserId;
use crate::tarantool::{Arg, Tarantool, TarantoolError};

/// Stores a message; its number in its dialog.
#[tracing::instrument(name = "tarantool.dialog_send", skip(store, text))]
pub async fn send_message(
    store: &Tarantool,
    database: i64,
    key: DialogKey,
    from: UserId,
    to: UserId,
    text: &MessageText,
) -> Result<i64, TarantoolError> {
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
    values
        .first()
        .and_then(Value::as_i64)
        .ok_or_else(|| unexpected("dialog_send", &values))
}

/// A page of the dialog, newest first.
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
