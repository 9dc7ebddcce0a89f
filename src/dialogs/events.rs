//! What the dialogs tell the unread counters: a message was stored, or a party read the dialog up
//! to a message. The JSON form is what the outbox stores and what travels on the bus; `kind` is
//! also the routing key. Applying an event is a merge (see `crate::cache::UnreadCounters`): one
//! delivered twice, late or out of order changes nothing more.

use serde::{Deserialize, Serialize};

use crate::cache::{CacheResult, UnreadCounters};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum DialogEvent {
    /// Message number `id` of the dialog between `from` and `to`.
    #[serde(rename = "message.sent")]
    MessageSent { id: i64, from: i64, to: i64 },
    /// `reader` has read the dialog with `other` up to message number `up_to`.
    #[serde(rename = "dialog.read")]
    Read { reader: i64, other: i64, up_to: i64 },
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

    /// Applies the event to the counters.
    pub async fn apply(&self, counters: &UnreadCounters) -> CacheResult<()> {
        match *self {
            DialogEvent::MessageSent { id, from, to } => {
                counters.message_sent(to, from, id).await.map(drop)
            }
            DialogEvent::Read {
                reader,
                other,
                up_to,
            } => counters.read(reader, other, up_to).await,
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
        };
        let json = serde_json::to_string(&sent).unwrap();
        assert_eq!(json, r#"{"kind":"message.sent","id":3,"from":7,"to":9}"#);
        assert_eq!(serde_json::from_str::<DialogEvent>(&json).unwrap(), sent);
        let read: DialogEvent =
            serde_json::from_str(r#"{"kind": "dialog.read", "reader": 9, "other": 7, "up_to": 3}"#)
                .unwrap();
        assert_eq!(read.kind(), "dialog.read");
        assert_eq!(sent.kind(), "message.sent");
    }
}
