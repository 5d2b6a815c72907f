//! A map of at most `capacity` entries by session id or key, the first inserted first out: the
//! consumer's snapshot cache and the edge's decoded keys.

use std::collections::{HashMap, VecDeque};

#[derive(Debug)]
pub(crate) struct Bounded<V> {
    held: HashMap<String, V>,
    /// Keys in the order they were first inserted (a replaced value keeps its place).
    order: VecDeque<String>,
    capacity: usize,
}

impl<V> Bounded<V> {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            held: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    pub(crate) fn get(&self, key: &str) -> Option<&V> {
        self.held.get(key)
    }

    pub(crate) fn get_mut(&mut self, key: &str) -> Option<&mut V> {
        self.held.get_mut(key)
    }

    pub(crate) fn len(&self) -> usize {
        self.held.len()
    }

    /// Sets `key`'s value; a key not held yet first makes room by dropping the oldest.
    pub(crate) fn insert(&mut self, key: String, value: V) {
        if let Some(held) = self.held.get_mut(&key) {
            *held = value;
            return;
        }
        while self.held.len() >= self.capacity {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            self.held.remove(&oldest);
        }
        self.order.push_back(key.clone());
        self.held.insert(key, value);
    }

    pub(crate) fn clear(&mut self) {
        self.held.clear();
        self.order.clear();
    }
}
