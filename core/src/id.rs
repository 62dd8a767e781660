//! Message id factories.

/// Makes message ids.
pub trait IdFactory: Send + Sync + 'static {
    /// A new, unique id.
    fn next_id(&self) -> String;
}

/// UUID version 7 ids: time-ordered, 36 characters. The default.
#[derive(Clone, Copy, Debug, Default)]
pub struct UuidV7Ids;

impl IdFactory for UuidV7Ids {
    fn next_id(&self) -> String {
        uuid::Uuid::now_v7().to_string()
    }
}

/// KSUID ids: time-ordered, 27 base-62 characters, as Segment's KSUID and Watermill use.
#[derive(Clone, Copy, Debug, Default)]
pub struct KsuidIds;

impl IdFactory for KsuidIds {
    fn next_id(&self) -> String {
        use svix_ksuid::KsuidLike;
        svix_ksuid::Ksuid::now(None).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_unique_and_well_formed() {
        let uuids: HashSet<String> = (0..1000).map(|_| UuidV7Ids.next_id()).collect();
        assert_eq!(uuids.len(), 1000);
        assert!(uuids.iter().all(|id| uuid::Uuid::parse_str(id).unwrap().get_version_num() == 7));

        let ksuids: HashSet<String> = (0..1000).map(|_| KsuidIds.next_id()).collect();
        assert_eq!(ksuids.len(), 1000);
        assert!(ksuids.iter().all(|id| id.len() == 27 && id.chars().all(|c| c.is_ascii_alphanumeric())));
    }
}
