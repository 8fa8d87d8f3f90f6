//! `max_connections_per_client`: how many connections one client address may hold open at once.
//!
//! Counted per IP (an IPv4-mapped IPv6 address counts as its IPv4 one); an address's entry is
//! removed with its last connection, so the table holds only addresses connected now. This is
//! per gateway: several gateways behind one balancer each count their own.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

#[derive(Debug, Default)]
pub struct ConnLimiter {
    /// 0: no cap.
    max: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection's place in its address's count, given back on drop.
#[derive(Debug)]
pub struct Slot {
    limiter: Arc<ConnLimiter>,
    ip: IpAddr,
}

impl ConnLimiter {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(ConnLimiter {
            max,
            open: Mutex::default(),
        })
    }

    /// A slot for a new connection from `ip`, or `None` when the address holds its cap already.
    pub fn acquire(self: &Arc<Self>, ip: IpAddr) -> Option<Slot> {
        let ip = ip.to_canonical();
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(ip).or_insert(0);
        if self.max > 0 && *n >= self.max {
            return None;
        }
        *n += 1;
        Some(Slot {
            limiter: self.clone(),
            ip,
        })
    }

    /// Connections `ip` holds now.
    pub fn open(&self, ip: IpAddr) -> usize {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.get(&ip.to_canonical()).copied().unwrap_or(0)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.limiter.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_each_address_and_forgets_it_when_closed() {
        let l = ConnLimiter::new(2);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let s1 = l.acquire(a).unwrap();
        let _s2 = l.acquire(a).unwrap();
        assert!(l.acquire(a).is_none());
        // The same address written as IPv4-mapped IPv6 is the same client.
        assert!(l.acquire("::ffff:127.0.0.1".parse().unwrap()).is_none());
        assert!(l.acquire(b).is_some());
        drop(s1);
        assert_eq!(l.open(a), 1);
        assert!(l.acquire(a).is_some());
        drop(_s2);
        assert_eq!(l.open(b), 0);
        assert!(l.open.lock().unwrap().is_empty(), "no entry outlives its connections");
    }

    #[test]
    fn zero_means_no_cap() {
        let l = ConnLimiter::new(0);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let slots: Vec<_> = (0..1000).map(|_| l.acquire(a).unwrap()).collect();
        assert_eq!(l.open(a), 1000);
        drop(slots);
        assert_eq!(l.open(a), 0);
    }
}
