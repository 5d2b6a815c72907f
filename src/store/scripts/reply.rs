//! Script replies decoded: a leading word and its items ([`Reply`]), one-word replies, and the
//! `need` of a script that plans ([`Plan`]).

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

/// A reply of a script that plans (plan, then commit): its own reply, or `need` with the ids it
/// met that the call did not declare (it wrote nothing; call again with them declared).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan<T> {
    Done(T),
    Need(Vec<String>),
}

impl<T: FromRedisValue> FromRedisValue for Plan<T> {
    fn from_redis_value(value: Value) -> Result<Self, ParsingError> {
        if let Value::Array(items) = &value {
            if matches!(items.first(), Some(Value::BulkString(w)) if w == b"need") {
                let ids: Vec<String> = FromRedisValue::from_redis_value(value)?;
                if ids.len() < 2 {
                    return Err("`need` names no id".into());
                }
                return Ok(Plan::Need(ids[1..].to_vec()));
            }
        }
        T::from_redis_value(value).map(Plan::Done)
    }
}

/// The value a `need` reply names, parsed, for the next call of a plan that declares one value
/// (a session's user, a challenge's address): an error when it names none that parses, or the
/// one the call already declared (the plan would not move).
pub(crate) fn needed<T: PartialEq>(
    script: &'static str,
    ids: &[String],
    parse: impl Fn(&str) -> Option<T>,
    declared: Option<&T>,
) -> Result<T, crate::store::Error> {
    match ids.first().and_then(|id| parse(id)) {
        Some(named) if Some(&named) != declared => Ok(named),
        _ => Err(crate::store::Error::Reply {
            script,
            detail: "`need` names nothing new to declare".into(),
        }),
    }
}
