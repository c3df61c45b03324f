//! [`Fingerprint`]: what a run's plan was when it was journaled, to tell
//! a resume with another plan from a resume of the same one.

/// A plan as the journal keeps it: each part's name and a description of
/// everything about it that changes what a replay means (coordinate,
/// placement, modes), in plan order, plus the cycle's own settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fingerprint {
    /// The cycle-wide settings (sync mode, limits).
    pub cycle: String,
    /// `(part name, description)` in plan order.
    pub parts: Vec<(String, String)>,
}

/// The first difference between two fingerprints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Drift {
    /// What differs: `the cycle`, or `part "name"`.
    pub what: String,
    /// The journal's side.
    pub was: String,
    /// The plan's side now.
    pub now: String,
}

impl Fingerprint {
    /// The fingerprint of a cycle with settings `cycle` and `parts`
    /// (`(name, description)` in plan order).
    pub fn new<N, D>(cycle: impl Into<String>, parts: impl IntoIterator<Item = (N, D)>) -> Self
    where
        N: Into<String>,
        D: Into<String>,
    {
        Fingerprint {
            cycle: cycle.into(),
            parts: parts
                .into_iter()
                .map(|(name, desc)| (name.into(), desc.into()))
                .collect(),
        }
    }

    /// Where `now` first differs from `self` (the journaled plan), if it
    /// does.
    pub fn first_difference(&self, now: &Fingerprint) -> Option<Drift> {
        if self.cycle != now.cycle {
            return Some(Drift {
                what: "the cycle".to_owned(),
                was: self.cycle.clone(),
                now: now.cycle.clone(),
            });
        }
        let absent = || "absent".to_owned();
        let longest = self.parts.len().max(now.parts.len());
        let drift = |i: usize| match (self.parts.get(i), now.parts.get(i)) {
            (Some(a), Some(b)) if a == b => None,
            (Some((name, was)), Some((other, is))) if name == other => Some(Drift {
                what: format!("part \"{name}\""),
                was: was.clone(),
                now: is.clone(),
            }),
            (Some((name, was)), Some((other, is))) => Some(Drift {
                what: format!("part #{} (\"{name}\" then, \"{other}\" now)", i + 1),
                was: format!("\"{name}\": {was}"),
                now: format!("\"{other}\": {is}"),
            }),
            (Some((name, was)), None) => Some(Drift {
                what: format!("part \"{name}\""),
                was: was.clone(),
                now: absent(),
            }),
            (None, Some((name, is))) => Some(Drift {
                what: format!("part \"{name}\""),
                was: absent(),
                now: is.clone(),
            }),
            (None, None) => None,
        };
        // A part renamed, added or removed changes its neighbours'
        // descriptions too: name it rather than the first neighbour.
        let renamed = (0..longest).find(|&i| {
            self.parts.get(i).map(|(name, _)| name) != now.parts.get(i).map(|(name, _)| name)
        });
        match renamed {
            Some(i) => drift(i),
            None => (0..longest).find_map(drift),
        }
    }

    /// The fingerprint as one text (what the journal stores).
    pub(crate) fn encode(&self) -> String {
        let mut out = String::new();
        push_field(&mut out, &self.cycle);
        for (name, desc) in &self.parts {
            push_field(&mut out, name);
            push_field(&mut out, desc);
        }
        out
    }

    /// The fingerprint stored as `text`, if it is one.
    pub(crate) fn decode(text: &str) -> Option<Fingerprint> {
        let mut fields = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            let (len, tail) = rest.split_once(':')?;
            let len: usize = len.parse().ok()?;
            let field = tail.get(..len)?;
            fields.push(field.to_owned());
            rest = tail.get(len..)?;
        }
        let mut fields = fields.into_iter();
        let cycle = fields.next()?;
        let mut parts = Vec::new();
        while let Some(name) = fields.next() {
            parts.push((name, fields.next()?));
        }
        Some(Fingerprint { cycle, parts })
    }
}

/// A length-prefixed field: `len:text`.
fn push_field(out: &mut String, field: &str) {
    out.push_str(&field.len().to_string());
    out.push(':');
    out.push_str(field);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn print(parts: &[(&str, &str)]) -> Fingerprint {
        Fingerprint::new("sync=parallel", parts.iter().copied())
    }

    #[test]
    fn the_first_part_that_differs_is_named() {
        let was = print(&[("load", "1-1 pool"), ("score", "2-1 process retry")]);
        assert_eq!(was.first_difference(&was.clone()), None);
        let now = print(&[("load", "1-1 pool"), ("score", "2-1 pool retry")]);
        let drift = was.first_difference(&now).unwrap();
        assert_eq!(drift.what, "part \"score\"");
        assert_eq!(
            (drift.was.as_str(), drift.now.as_str()),
            ("2-1 process retry", "2-1 pool retry")
        );
        let shorter = print(&[("load", "1-1 pool")]);
        assert_eq!(was.first_difference(&shorter).unwrap().now, "absent");
        let renamed = print(&[("load", "1-1 pool"), ("rank", "2-1 process retry")]);
        assert!(
            was.first_difference(&renamed)
                .unwrap()
                .what
                .contains("\"rank\" now")
        );
        // The renamed part is named, not the neighbour it changed.
        let was = print(&[("load", "1-1 then [score]"), ("score", "2-1")]);
        let now = print(&[("load", "1-1 then [rank]"), ("rank", "2-1")]);
        assert!(
            was.first_difference(&now)
                .unwrap()
                .what
                .contains("\"rank\" now")
        );
    }

    #[test]
    fn it_survives_its_text_form_whatever_the_names() {
        let odd = print(&[("a:b", "3:x"), ("", ""), ("ü", "1-1")]);
        assert_eq!(Fingerprint::decode(&odd.encode()), Some(odd));
        assert_eq!(Fingerprint::decode("9:short"), None);
        assert_eq!(Fingerprint::decode("x:"), None);
    }
}
