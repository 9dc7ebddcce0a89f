//! What happened to a post, as the feed cache and the live feed learn it: in-process right after
//! the write when no broker is configured, through the outbox and RabbitMQ when one is.

use serde::{Deserialize, Serialize};

/// One change to a post. The JSON form is what the outbox stores (built by SQL, see
/// [`super::sql`]) and what travels on the bus; `kind` is also the routing key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum PostEvent {
    #[serde(rename = "post.created")]
    Created {
        post_id: i64,
        author_id: i64,
        text: String,
    },
    #[serde(rename = "post.updated")]
    Updated { post_id: i64, author_id: i64 },
    #[serde(rename = "post.deleted")]
    Deleted { post_id: i64, author_id: i64 },
}

impl PostEvent {
    /// The routing key, as in the outbox's `kind` column.
    pub fn kind(&self) -> &'static str {
        match self {
            PostEvent::Created { .. } => "post.created",
            PostEvent::Updated { .. } => "post.updated",
            PostEvent::Deleted { .. } => "post.deleted",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_read_the_json_that_the_outbox_writes() {
        // The shape jsonb_build_object produces in sql.rs.
        let created: PostEvent = serde_json::from_str(
            r#"{"kind": "post.created", "post_id": 7, "author_id": 3, "text": "привет"}"#,
        )
        .unwrap();
        assert_eq!(
            created,
            PostEvent::Created {
                post_id: 7,
                author_id: 3,
                text: "привет".into()
            }
        );
        assert_eq!(created.kind(), "post.created");
        let deleted: PostEvent =
            serde_json::from_str(r#"{"author_id": 3, "kind": "post.deleted", "post_id": 7}"#)
                .unwrap();
        assert_eq!(deleted.kind(), "post.deleted");
        assert_eq!(
            deleted,
            PostEvent::Deleted {
                post_id: 7,
                author_id: 3
            }
        );
        assert!(serde_json::from_str::<PostEvent>(r#"{"kind": "post.exploded"}"#).is_err());
    }
}
