//! Any bytes as a delivery body: parsing and normalizing never panic, and what they produce holds
//! the invariants the store relies on.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ticket_audit::domain::normalize::MAX_IDENTIFIER_BYTES;
use ticket_audit::domain::{normalize, Envelope};
use ticket_audit::store::text::{escape, unescape};

fuzz_target!(|data: &[u8]| {
    if let Ok(envelope) = Envelope::parse(data) {
        let n = normalize(&envelope);
        // Positions are unique and positive within the delivery (the primary keys of messages and commands).
        let mut positions: Vec<i32> = n.messages.iter().map(|m| m.position).chain(n.commands.iter().map(|c| c.position)).collect();
        let count = positions.len();
        positions.sort_unstable();
        positions.dedup();
        assert_eq!(positions.len(), count);
        assert!(positions.iter().all(|p| *p > 0));
        // Indexed identifiers fit their indexes.
        for id in n.ticket.iter().chain(n.carried_tenant.iter()) {
            assert!(id.len() <= MAX_IDENTIFIER_BYTES);
        }
        for u in &n.ticket_updates {
            assert!(u.name.len() <= MAX_IDENTIFIER_BYTES);
            for f in [&u.status, &u.tenant_id, &u.agent_name, &u.agent_id].into_iter().flatten() {
                assert!(f.len() <= MAX_IDENTIFIER_BYTES);
            }
        }
        // Messages only for a named ticket, and a successful delivery.
        assert!(n.messages.is_empty() || (n.ticket.is_some() && n.success));
        // Every string survives the text escape exactly, and the stored form holds no U+0000.
        for s in n.messages.iter().map(|m| &m.content).chain(n.commands.iter().map(|c| &c.command)) {
            let e = escape(s);
            assert!(!e.contains('\0'));
            assert_eq!(unescape(&e), s.as_str());
        }
    }
    if let Ok(s) = std::str::from_utf8(data) {
        assert_eq!(unescape(&escape(s)), s);
    }
});
