//! A counting gate for blocking code: at most `max` holders at once, the
//! others wait. It bounds what runs side by side (image decodes, searches)
//! however many requests arrive together.

use std::sync::{Condvar, Mutex, MutexGuard};

/// At most `max` [`Permit`]s out at once.
#[derive(Debug)]
pub(crate) struct Gate {
    max: usize,
    held: Mutex<usize>,
    freed: Condvar,
}

/// One place in a [`Gate`], given back when dropped.
#[derive(Debug)]
pub(crate) struct Permit<'a> {
    gate: &'a Gate,
}

impl Gate {
    /// A gate letting `max` (at least one) through at once.
    pub(crate) const fn new(max: usize) -> Self {
        Gate {
            max: if max == 0 { 1 } else { max },
            held: Mutex::new(0),
            freed: Condvar::new(),
        }
    }

    fn held(&self) -> MutexGuard<'_, usize> {
        // The count is a plain integer: a panic elsewhere leaves it consistent.
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for a place (blocking the thread).
    pub(crate) fn enter(&self) -> Permit<'_> {
        let mut held = self.held();
        while *held >= self.max {
            held = self.freed.wait(held).unwrap_or_else(|p| p.into_inner());
        }
        *held += 1;
        Permit { gate: self }
    }

    /// A place if one is free now.
    #[cfg(test)]
    pub(crate) fn try_enter(&self) -> Option<Permit<'_>> {
        let mut held = self.held();
        if *held >= self.max {
            return None;
        }
        *held += 1;
        Some(Permit { gate: self })
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let mut held = self.gate.held();
        *held = held.saturating_sub(1);
        drop(held);
        self.gate.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_max_holders_and_a_waiter_gets_the_freed_place() {
        static GATE: Gate = Gate::new(2);
        let a = GATE.enter();
        let b = GATE.enter();
        assert!(GATE.try_enter().is_none(), "a third holder is refused");
        let waiter = std::thread::spawn(|| {
            let _p = GATE.enter();
            "entered"
        });
        drop(a);
        assert_eq!(waiter.join().expect("waiter"), "entered");
        let c = GATE.try_enter();
        assert!(c.is_some(), "the waiter gave its place back");
        assert!(GATE.try_enter().is_none(), "b and c hold both places");
        drop((b, c));
        assert!(GATE.try_enter().is_some());
    }

    #[test]
    fn a_gate_of_zero_lets_one_through() {
        let g = Gate::new(0);
        let p = g.try_enter();
        assert!(p.is_some());
        assert!(g.try_enter().is_none());
    }
}
