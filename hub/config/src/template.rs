//! Topic templates such as `site-7/{key}`: text with named placeholders,
//! parsed once when the uplink starts so a typo is a config error, not a
//! record that cannot be sent.

use std::fmt::Write;

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template(Vec<Part>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Name(String),
}

/// Why a template cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("template '{template}': unknown placeholder {{{name}}} (known: {known})")]
    Unknown { template: String, name: String, known: String },
    #[error("template '{0}': a '{{' without its '}}'")]
    Unclosed(String),
    #[error("template '{0}' is empty")]
    Empty(String),
}

impl Template {
    /// Parses `text`, allowing only the placeholders in `known`.
    pub fn parse(text: &str, known: &[&str]) -> Result<Template, TemplateError> {
        if text.is_empty() {
            return Err(TemplateError::Empty(text.into()));
        }
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_string()));
            }
            let close = rest[open..].find('}').ok_or_else(|| TemplateError::Unclosed(text.into()))? + open;
            let name = &rest[open + 1..close];
            if !known.contains(&name) {
                let known = known.iter().map(|k| format!("{{{k}}}")).collect::<Vec<_>>().join(", ");
                return Err(TemplateError::Unknown { template: text.into(), name: name.into(), known });
            }
            parts.push(Part::Name(name.to_string()));
            rest = &rest[close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Template(parts))
    }

    /// The template with each placeholder replaced by `value(name)`.
    pub fn render<'a>(&self, value: impl Fn(&str) -> std::borrow::Cow<'a, str>) -> String {
        let mut out = String::new();
        for part in &self.0 {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Name(n) => {
                    let _ = write!(out, "{}", value(n));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;

    #[test]
    fn placeholders_are_replaced() {
        let t = Template::parse("site-7/{key}/p{partition}", &["key", "partition"]).unwrap();
        let got = t.render(|n| Cow::Borrowed(if n == "key" { "sensors/t1" } else { "3" }));
        assert_eq!(got, "site-7/sensors/t1/p3");
    }

    #[test]
    fn typos_are_errors() {
        let e = Template::parse("a/{kye}", &["key"]).unwrap_err();
        assert!(e.to_string().contains("unknown placeholder {kye}"), "{e}");
        assert!(matches!(Template::parse("a/{key", &["key"]), Err(TemplateError::Unclosed(_))));
        assert!(matches!(Template::parse("", &["key"]), Err(TemplateError::Empty(_))));
    }
}
