//! What the dialogs tell the unread counters: a message was stored, or a party read the dialog up
//! to a message, each with the count the store had after it (the sender's messages in the
//! dialog, or the other party's messages the reader has now seen). The JSON form is what the
//! outbox stores and what travels on the bus; `kind` is also the routing key. Applying an event
//! keeps the larger count (see `crate::cache::UnreadCounters`): one delivered twice, late or out
//! of order changes nothing more. An event without its count (written by a server of the version
//! before) cannot be applied as it is: its dialog is marked for repair from the store instead.

use serde::{Deserialize, Serialize};

use crate::cache::{CacheResult, UnreadCounters};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum DialogEvent {
    /// Message number `id` of the dialog between `from` and `to`, the `sent`-th of `from`'s.
    #[serde(rename = "message.sent")]
    MessageSent {
        id: i64,
        from: i64,
        to: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sent: Option<i64>,
    },
    /// `reader` has read the dialog with `other` up to message number `up_to`, which covers
    /// `seen` of the other's messages.
    #[serde(rename = "dialog.read")]
    Read {
        reader: i64,
        other: i64,
        up_to: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seen: Option<i64>,
    },
}

impl DialogEvent {
    /// The routing keys, as in the outbox's `kind` column.
    pub const KINDS: [&'static str; 2] = ["message.sent", "dialog.read"];

    pub fn kind(&self) -> &'static str {
        match self {
            DialogEvent::MessageSent { .. } => Self::KINDS[0],
            DialogEvent::Read { .. } => Self::KINDS[1],
        }
    }

    /// Applies the event to the counters (or, without its count, marks its dialog for repair).
    pub async fn apply(&self, counters: &UnreadCounters) -> CacheResult<()> {
        match *self {
            DialogEvent::MessageSent {
                from,
                to,
                sent: Some(sent),
                ..
            } => counters.message_sent(to, from, sent).await.map(drop),
            DialogEvent::Read {
                reader,
                other,
                seen: Some(seen),
                ..
            } => counters.read(reader, other, seen).await,
            DialogEvent::MessageSent { from: a, to: b, .. }
            | DialogEvent::Read {
                reader: a,
                other: b,
                ..
            } => counters.mark_dialog_stale(a.min(b), a.max(b)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_keep_their_json_and_their_routing_key() {
        let sent = DialogEvent::MessageSent {
            id: 3,
            from: 7,
            to: 9,
            sent: Some(2),
        };
        let json = serde_json::to_string(&sent).unwrap();
        assert_eq!(
            json,
            r#"{"kind":"message.sent","id":3,"from":7,"to":9,"sent":2}"#
        );
        assert_eq!(serde_json::from_str::<DialogEvent>(&json).unwrap(), sent);
        let read: DialogEvent = serde_json::from_str(
            r#"{"kind": "dialog.read", "reader": 9, "other": 7, "up_to": 3, "seen": 2}"#,
        )
        .unwrap();
        assert_eq!(read.kind(), "dialog.read");
        assert_eq!(sent.kind(), "message.sent");
        // As the version before wrote them: read, with no count.
        let earlier: DialogEvent =
            serde_json::from_str(r#"{"kind": "message.sent", "id": 3, "from": 7, "to": 9}"#)
                .unwrap();
        assert!(matches!(
            earlier,
            DialogEvent::MessageSent { sent: None, .. }
        ));
    }
}
