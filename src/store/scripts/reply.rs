//! Script replies decoded: a leading word and its items ([`Reply`]), and one-word replies.

use std::time::Duration;

use redis::{FromRedisValue, ParsingError, Value};

/// A script reply being decoded: its leading word (a reply of one word, or the first item of
/// a list), then its further items in order. Errors name the word and the shape, never an
/// item's value (a reply may hold an e-mail address).
pub(crate) struct Reply {
    word: String,
    items: std::vec::IntoIter<Value>,
}

impl Reply {
    pub(crate) fn read(value: Value) -> Result<Self, ParsingError> {
        let (first, items) = match value {
            Value::Array(items) => {
                let mut items = items.into_iter();
                let first = items.next().ok_or("an empty list")?;
                (first, items)
            }
            one => (one, Vec::new().into_iter()),
        };
        Ok(Self {
            word: String::from_redis_value(first)?,
            items,
        })
    }

    pub(crate) fn word(&self) -> &str {
        &self.word
    }

    /// The next item, as `T`.
    pub(crate) fn next<T: FromRedisValue>(&mut self) -> Result<T, ParsingError> {
        let item = self
            .items
            .next()
            .ok_or_else(|| format!("`{}` lacks an item", self.word))?;
        T::from_redis_value(item)
            .map_err(|_| format!("`{}` has a malformed item", self.word).into())
    }

    /// The next item, a count of milliseconds.
    pub(crate) fn millis(&mut self) -> Result<Duration, ParsingError> {
        self.next().map(Duration::from_millis)
    }

    /// The items left, each as `T`.
    pub(crate) fn rest<T: FromRedisValue>(&mut self) -> Result<Vec<T>, ParsingError> {
        let mut rest = Vec::with_capacity(self.items.len());
        while self.items.len() > 0 {
            rest.push(self.next()?);
        }
        Ok(rest)
    }

    /// The items left, as `field value` pairs.
    pub(crate) fn pairs(&mut self) -> Result<Vec<(String, String)>, ParsingError> {
        let mut pairs = Vec::with_capacity(self.items.len() / 2);
        while self.items.len() > 0 {
            pairs.push((self.next()?, self.next()?));
        }
        Ok(pairs)
    }

    /// `value`, once every item was read.
    pub(crate) fn end<T>(self, value: T) -> Result<T, ParsingError> {
        match self.items.len() {
            0 => Ok(value),
            n => Err(format!("`{}` has {n} items too many", self.word).into()),
        }
    }

    /// The error for a word the script does not answer.
    pub(crate) fn unknown<T>(&self) -> Result<T, ParsingError> {
        Err(format!("unknown reply `{}`", self.word).into())
    }
}

/// A reply of one word among `words`, as the value it pairs with.
pub(crate) fn one_word<T: Copy>(value: Value, words: &[(&str, T)]) -> Result<T, ParsingError> {
    let reply = Reply::read(value)?;
    match words.iter().find(|(w, _)| *w == reply.word()) {
        Some((_, t)) => reply.end(*t),
        None => reply.unknown(),
    }
}
