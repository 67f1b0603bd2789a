//! A delivery's idempotency key: the sender's id header when it gives one, else the body's hash.

/// Longest key accepted; keys are indexed.
pub const MAX_KEY_BYTES: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    WebhookId,
    SvixId,
    IdempotencyKey,
    BodySha256,
    /// The service's own entry recording a redaction (`domain::redaction`); never a sender's.
    Redaction,
}

impl KeySource {
    pub fn as_str(self) -> &'static str {
        match self {
            KeySource::WebhookId => "webhook-id",
            KeySource::SvixId => "svix-id",
            KeySource::IdempotencyKey => "idempotency-key",
            KeySource::BodySha256 => "body-sha256",
            KeySource::Redaction => "redaction",
        }
    }

    /// The namespace a key is unique in: its source, with `svix-id` an alias of `webhook-id`
    /// (both are the Standard Webhooks message id). A client's `Idempotency-Key` of
    /// `sha256:<hex>` therefore never matches another delivery's body-hash key. The database's
    /// `key_scope()` (migration V6) is the same rule.
    pub fn scope(self) -> &'static str {
        match self {
            KeySource::WebhookId | KeySource::SvixId => "webhook-id",
            KeySource::IdempotencyKey => "idempotency-key",
            KeySource::BodySha256 => "body-sha256",
            KeySource::Redaction => "redaction",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryKey {
    value: String,
    source: KeySource,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the {0} header must be 1 to 256 visible ASCII characters")]
pub struct InvalidKey(pub &'static str);

impl DeliveryKey {
    /// The first of `webhook-id`, `svix-id`, `Idempotency-Key` that is present; else `sha256:<hex of body>`.
    /// Each of them that is present must be 1 to 256 visible ASCII characters, or the delivery is
    /// refused: skipping a bad one would silently change which deliveries count as the same.
    pub fn choose(
        webhook_id: Option<&[u8]>,
        svix_id: Option<&[u8]>,
        idempotency_key: Option<&[u8]>,
        body_sha256: &[u8; 32],
    ) -> Result<Self, InvalidKey> {
        let candidates = [
            (webhook_id, KeySource::WebhookId),
            (svix_id, KeySource::SvixId),
            (idempotency_key, KeySource::IdempotencyKey),
        ];
        let mut chosen = None;
        for (value, source) in candidates {
            let Some(v) = value else { continue };
            let ok = !v.is_empty() && v.len() <= MAX_KEY_BYTES && v.iter().all(|b| b.is_ascii_graphic());
            if !ok {
                return Err(InvalidKey(source.as_str()));
            }
            if chosen.is_none() {
                // Visible ASCII is UTF-8.
                chosen = Some(DeliveryKey { value: String::from_utf8_lossy(v).into_owned(), source });
            }
        }
        Ok(chosen.unwrap_or_else(|| DeliveryKey {
            value: format!("sha256:{}", hex::encode(body_sha256)),
            source: KeySource::BodySha256,
        }))
    }

    /// The key of the entry that redacts delivery `target` (`domain::redaction::key_of`).
    pub fn redaction(target: i64) -> Self {
        DeliveryKey { value: super::redaction::key_of(target), source: KeySource::Redaction }
    }

    pub fn as_str(&self) -> &str {
        &self.value
    }

    pub fn source(&self) -> KeySource {
        self.source
    }

    /// What makes two deliveries the same: the key within its scope.
    pub fn identity(&self) -> (&'static str, &str) {
        (self.source.scope(), &self.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_order_and_fallback() {
        let sha = [7u8; 32];
        let k = DeliveryKey::choose(Some(b"msg_1"), Some(b"x"), None, &sha).unwrap();
        assert_eq!((k.as_str(), k.source()), ("msg_1", KeySource::WebhookId));
        let k = DeliveryKey::choose(None, None, Some(b"idem"), &sha).unwrap();
        assert_eq!(k.source(), KeySource::IdempotencyKey);
        let k = DeliveryKey::choose(None, None, None, &sha).unwrap();
        assert_eq!(k.as_str(), format!("sha256:{}", hex::encode(sha)));
        assert!(DeliveryKey::choose(Some(b""), None, None, &sha).is_err());
        assert!(DeliveryKey::choose(Some(b"a b"), None, None, &sha).is_err());
        assert!(DeliveryKey::choose(Some(&[b'a'; 257]), None, None, &sha).is_err());
        assert!(
            DeliveryKey::choose(Some(b"ok"), None, Some(b"not ok"), &sha).is_err(),
            "every key header present is checked"
        );
    }

    #[test]
    fn a_key_chosen_by_the_client_is_not_a_body_hash() {
        let sha = [7u8; 32];
        let forged = format!("sha256:{}", hex::encode(sha));
        let client = DeliveryKey::choose(None, None, Some(forged.as_bytes()), &sha).unwrap();
        let derived = DeliveryKey::choose(None, None, None, &sha).unwrap();
        assert_eq!(client.as_str(), derived.as_str());
        assert_ne!(client.identity(), derived.identity());
        let svix = DeliveryKey::choose(None, Some(b"msg_1"), None, &sha).unwrap();
        let webhook = DeliveryKey::choose(Some(b"msg_1"), None, None, &sha).unwrap();
        assert_eq!(svix.identity(), webhook.identity(), "svix-id is webhook-id's alias");
    }
}
