//! What this process's writer has committed, as a hint for the live tail: the highest seq, and
//! which ticket each seq it committed since the tail last looked concerns.
//!
//! Only a hint: the tail sends what it reads from the database, and this tells it which rows to
//! read (those of the watched tickets' seqs), or that it need read none. Seqs are handed out in
//! order under the lock on `ledger_head`, and the writer announces its batches in seq order, each
//! after its commit; a batch that does not start right after the last seq announced (another
//! instance wrote in between, or a commit was not known to land) starts the record afresh, so
//! [`Touched`] only ever speaks for seqs this writer committed, every one of them. The tail reads
//! everything for any seq outside it, as it does for other instances' commits.

use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;

/// Most seqs recorded between two looks of the tail; past that the record starts afresh (the
/// tail then reads everything, as for another instance's commits) rather than grow.
const MOST: usize = 50_000;

/// The seqs this writer committed in `(from, to]`, all of them, with the ticket each concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Touched {
    pub from: i64,
    pub to: i64,
    /// (seq, ticket) in seq order, for the seqs whose delivery names a ticket (every row a
    /// delivery adds to a timeline is that ticket's); the others have no timeline entry.
    pub tickets: Vec<(i64, String)>,
}

impl Touched {
    fn empty_at(to: i64) -> Self {
        Touched { from: to, to, tickets: Vec::new() }
    }

    /// Whether it speaks for every seq in `(after, up_to]`.
    pub fn covers(&self, after: i64, up_to: i64) -> bool {
        self.from <= after && up_to <= self.to
    }

    /// Records one batch's new seqs, in order, each with its delivery's ticket.
    fn record<'a>(&mut self, seqs: impl IntoIterator<Item = (i64, Option<&'a str>)>) {
        for (seq, ticket) in seqs {
            if seq != self.to + 1 || self.tickets.len() >= MOST {
                // A gap (someone else's seqs, or an unannounced commit) or too much: what
                // lies before is no longer spoken for.
                *self = Touched::empty_at(seq - 1);
            }
            self.to = seq;
            if let Some(t) = ticket {
                self.tickets.push((seq, t.to_owned()));
            }
        }
    }
}

/// The writer's end: announces each batch after its commit.
#[derive(Clone)]
pub struct Announcer {
    head: Arc<watch::Sender<i64>>,
    log: Arc<Mutex<Touched>>,
}

/// The tail's end: woken by `head`, it takes what was recorded since its last look.
#[derive(Clone)]
pub struct Committed {
    /// The highest seq this writer has committed (0 before its first commit).
    pub head: watch::Receiver<i64>,
    log: Arc<Mutex<Touched>>,
}

pub fn channel() -> (Announcer, Committed) {
    let (tx, rx) = watch::channel(0i64);
    let log = Arc::new(Mutex::new(Touched::empty_at(0)));
    (Announcer { head: Arc::new(tx), log: log.clone() }, Committed { head: rx, log })
}

impl Announcer {
    /// A batch committed these new seqs (ascending), each with its delivery's ticket.
    pub fn announce<'a>(&self, seqs: impl IntoIterator<Item = (i64, Option<&'a str>)>) {
        let top = {
            let mut log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
            let before = log.to;
            log.record(seqs);
            (log.to != before).then_some(log.to)
        };
        // After the record: a tail woken for `top` finds it there.
        if let Some(top) = top {
            self.head.send_if_modified(|head| {
                let moved = top > *head;
                *head = (*head).max(top);
                moved
            });
        }
    }
}

impl Committed {
    /// What was recorded since the last take; the record goes on from its end.
    pub fn take(&self) -> Touched {
        let mut log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        let to = log.to;
        std::mem::replace(&mut *log, Touched::empty_at(to))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_speaks_only_for_an_unbroken_run_of_this_writers_seqs() {
        let (a, c) = channel();
        a.announce([(1, Some("A")), (2, None), (3, Some("B"))]);
        assert_eq!(*c.head.borrow(), 3);
        let t = c.take();
        assert_eq!(t, Touched { from: 0, to: 3, tickets: vec![(1, "A".into()), (3, "B".into())] });
        assert!(t.covers(0, 3) && t.covers(2, 3) && !t.covers(0, 4));
        // Taken: the next record goes on from 3.
        a.announce([(4, Some("A"))]);
        let t = c.take();
        assert_eq!(t, Touched { from: 3, to: 4, tickets: vec![(4, "A".into())] });
        // Another instance wrote 5 and 6: 7 starts afresh; 5 and 6 are not spoken for.
        a.announce([(7, Some("C"))]);
        a.announce([(8, Some("A"))]);
        let t = c.take();
        assert_eq!(t, Touched { from: 6, to: 8, tickets: vec![(7, "C".into()), (8, "A".into())] });
        assert!(!t.covers(4, 8), "5 and 6 are another writer's");
        assert!(t.covers(6, 8));
        // A gap inside what was not taken yet drops what came before it.
        a.announce([(9, Some("A"))]);
        a.announce([(11, Some("B"))]);
        assert_eq!(c.take(), Touched { from: 10, to: 11, tickets: vec![(11, "B".into())] });
        // Nothing new: nothing recorded, no hint.
        a.announce([]);
        assert_eq!(c.take(), Touched { from: 11, to: 11, tickets: vec![] });
        assert_eq!(*c.head.borrow(), 11);
    }

    #[test]
    fn past_its_bound_the_record_starts_afresh_and_speaks_for_less() {
        let (a, c) = channel();
        let names: Vec<String> = (0..=MOST as i64).map(|i| format!("T{i}")).collect();
        a.announce(names.iter().enumerate().map(|(i, n)| (i as i64 + 1, Some(n.as_str()))));
        let t = c.take();
        assert_eq!(t.to, MOST as i64 + 1);
        assert_eq!(t.tickets.len(), 1);
        assert!(!t.covers(0, t.to), "the first seqs are no longer spoken for");
        assert!(t.covers(MOST as i64, t.to));
    }
}
