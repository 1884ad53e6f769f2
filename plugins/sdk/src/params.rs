//! The parameters an attachment gives its plugin (`min=20`, `limit=30`).

use core::str::FromStr;

/// Parameters of an attachment, in the order given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    /// Parameters from (name, value) pairs.
    pub fn new(pairs: Vec<(String, String)>) -> Self {
        Params { pairs }
    }

    /// Parameters from borrowed pairs (handy in tests).
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Self {
        Params { pairs: pairs.iter().map(|(n, v)| (String::from(*n), String::from(*v))).collect() }
    }

    /// The value of `name`, if given (the last one wins).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// A required parameter parsed as `T`; the error names the parameter.
    pub fn parse<T: FromStr>(&self, name: &str) -> Result<T, String> {
        let value = self.get(name).ok_or_else(|| format!("missing parameter {name:?}"))?;
        value.trim().parse().map_err(|_| format!("parameter {name:?}: cannot parse {value:?}"))
    }

    /// An optional parameter parsed as `T`, `default` when absent.
    pub fn parse_or<T: FromStr>(&self, name: &str, default: T) -> Result<T, String> {
        match self.get(name) {
            None => Ok(default),
            Some(_) => self.parse(name),
        }
    }

    /// All pairs, in the order given.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }
}
