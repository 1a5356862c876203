//! The typed metadata [`Filter`] engines turn into their own expressions.

use serde::{Deserialize, Serialize};

use super::{CollectionSpec, FieldType, FieldValue};
use crate::{Error, Result};

/// A metadata filter, built with the constructors below and turned by each engine into its
/// own expression tree: values are always literals, so no value can change the filter's
/// structure.
///
/// ```
/// use hybridstore_core::vector::Filter;
/// let f = Filter::eq("kind", "manual")
///     .and(Filter::range("year", 2020i64, 2025i64))
///     .and(Filter::contains("tags", "rust").or(Filter::is_in("lang", ["en", "de"])).not());
/// assert_eq!(f.fields(), vec!["kind", "lang", "tags", "year"]);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Filter {
    /// `field = value`.
    Eq(String, FieldValue),
    /// `field <> value` (records where the field is null do not match).
    Ne(String, FieldValue),
    /// `field > value`.
    Gt(String, FieldValue),
    /// `field >= value`.
    Ge(String, FieldValue),
    /// `field < value`.
    Lt(String, FieldValue),
    /// `field <= value`.
    Le(String, FieldValue),
    /// `field` equals one of the values.
    In(String, Vec<FieldValue>),
    /// A string-list field holds the string.
    Contains(String, String),
    /// The field is null (absent).
    IsNull(String),
    /// Every filter holds (true when empty).
    And(Vec<Filter>),
    /// Some filter holds (false when empty).
    Or(Vec<Filter>),
    /// The filter does not hold.
    Not(Box<Filter>),
}

impl Filter {
    /// `field = value`.
    pub fn eq(field: impl Into<String>, value: impl Into<FieldValue>) -> Filter {
        Filter::Eq(field.into(), value.into())
    }
    /// `field <> value`.
    pub fn ne(field: impl Into<String>, value: impl Into<FieldValue>) -> Filter {
        Filter::Ne(field.into(), value.into())
    }
    /// `field > value`.
    pub fn gt(field: impl Into<String>, value: impl Into<FieldValue>) -> Filter {
        Filter::Gt(field.into(), value.into())
    }
    /// `field >= value`.
    pub fn ge(field: impl Into<String>, value: impl Into<FieldValue>) -> Filter {
        Filter::Ge(field.into(), value.into())
    }
    /// `field < value`.
    pub fn lt(field: impl Into<String>, value: impl Into<FieldValue>) -> Filter {
        Filter::Lt(field.into(), value.into())
    }
    /// `field <= value`.
    pub fn le(field: impl Into<String>, value: impl Into<FieldValue>) -> Filter {
        Filter::Le(field.into(), value.into())
    }
    /// `start <= field < end` (half-open, as time windows are).
    pub fn range(
        field: impl Into<String>,
        start: impl Into<FieldValue>,
        end: impl Into<FieldValue>,
    ) -> Filter {
        let field = field.into();
        Filter::And(vec![
            Filter::Ge(field.clone(), start.into()),
            Filter::Lt(field, end.into()),
        ])
    }
    /// `field` equals one of `values`.
    pub fn is_in<V: Into<FieldValue>>(
        field: impl Into<String>,
        values: impl IntoIterator<Item = V>,
    ) -> Filter {
        Filter::In(field.into(), values.into_iter().map(Into::into).collect())
    }
    /// The string-list `field` holds `value`.
    pub fn contains(field: impl Into<String>, value: impl Into<String>) -> Filter {
        Filter::Contains(field.into(), value.into())
    }
    /// `field` is null.
    pub fn is_null(field: impl Into<String>) -> Filter {
        Filter::IsNull(field.into())
    }
    /// Both hold.
    pub fn and(self, other: Filter) -> Filter {
        match self {
            Filter::And(mut all) => {
                all.push(other);
                Filter::And(all)
            }
            first => Filter::And(vec![first, other]),
        }
    }
    /// Either holds.
    pub fn or(self, other: Filter) -> Filter {
        match self {
            Filter::Or(mut any) => {
                any.push(other);
                Filter::Or(any)
            }
            first => Filter::Or(vec![first, other]),
        }
    }
    /// Negation.
    #[allow(clippy::should_implement_trait)] // a builder method, like `and` and `or`
    pub fn not(self) -> Filter {
        Filter::Not(Box::new(self))
    }

    /// The fields the filter reads, sorted, without repeats.
    pub fn fields(&self) -> Vec<&str> {
        let mut out = std::collections::BTreeSet::new();
        self.collect_fields(&mut out);
        out.into_iter().collect()
    }

    fn collect_fields<'a>(&'a self, out: &mut std::collections::BTreeSet<&'a str>) {
        match self {
            Filter::Eq(f, _)
            | Filter::Ne(f, _)
            | Filter::Gt(f, _)
            | Filter::Ge(f, _)
            | Filter::Lt(f, _)
            | Filter::Le(f, _)
            | Filter::In(f, _)
            | Filter::Contains(f, _)
            | Filter::IsNull(f) => {
                out.insert(f);
            }
            Filter::And(all) | Filter::Or(all) => all.iter().for_each(|x| x.collect_fields(out)),
            Filter::Not(x) => x.collect_fields(out),
        }
    }

    /// Checks every field exists in `spec` and every value has its field's type (`Contains`
    /// needs a string list; comparisons cannot apply to string lists).
    ///
    /// # Errors
    /// `InvalidInput` naming the field.
    pub fn validate(&self, spec: &CollectionSpec) -> Result<()> {
        let typed = |field: &str| {
            spec.field_type(field).ok_or_else(|| {
                Error::invalid_input(format!(
                    "filter field {field:?} is not a field of collection {:?}",
                    spec.name
                ))
            })
        };
        let same = |field: &str, value: &FieldValue| -> Result<()> {
            let ty = typed(field)?;
            let ok = match (ty, value) {
                (FieldType::StringList, _) => false,
                // Integers compare with floats too.
                (FieldType::Float, FieldValue::Integer(_))
                | (FieldType::Integer, FieldValue::Float(_)) => true,
                (ty, v) => ty == v.field_type(),
            };
            if ok {
                Ok(())
            } else {
                Err(Error::invalid_input(format!(
                    "filter compares field {field:?} ({ty:?}) with a {:?} value",
                    value.field_type()
                )))
            }
        };
        match self {
            Filter::Eq(f, v)
            | Filter::Ne(f, v)
            | Filter::Gt(f, v)
            | Filter::Ge(f, v)
            | Filter::Lt(f, v)
            | Filter::Le(f, v) => same(f, v),
            Filter::In(f, vs) => vs.iter().try_for_each(|v| same(f, v)),
            Filter::Contains(f, _) => match typed(f)? {
                FieldType::StringList => Ok(()),
                other => Err(Error::invalid_input(format!(
                    "contains needs a string-list field; {f:?} is {other:?}"
                ))),
            },
            Filter::IsNull(f) => typed(f).map(|_| ()),
            Filter::And(all) | Filter::Or(all) => all.iter().try_for_each(|x| x.validate(spec)),
            Filter::Not(x) => x.validate(spec),
        }
    }
    /// Whether a record whose field values are `values` (absent fields are null) matches,
    /// with SQL's three-valued logic as the engines evaluate it: a comparison with a null
    /// field is unknown, `NOT unknown` is unknown, `AND`/`OR` follow Kleene's tables, and
    /// only a filter that is true matches (ISO/IEC 9075 §8.1–8.2; so `Ne("kind", x)` and
    /// `Not(Eq("kind", x))` both skip records without `kind`, as in LanceDB). Integers and
    /// floats compare numerically; strings bytewise. Call [`validate`](Self::validate)
    /// first: a comparison of values of other types is unknown.
    pub fn matches(&self, values: &std::collections::BTreeMap<String, FieldValue>) -> bool {
        self.truth(values) == Some(true)
    }

    /// The filter's truth value: `None` is SQL's unknown.
    fn truth(&self, values: &std::collections::BTreeMap<String, FieldValue>) -> Option<bool> {
        use std::cmp::Ordering;
        let cmp = |field: &str, value: &FieldValue| -> Option<Ordering> {
            compare(values.get(field)?, value)
        };
        match self {
            Filter::Eq(f, v) => cmp(f, v).map(Ordering::is_eq),
            Filter::Ne(f, v) => cmp(f, v).map(Ordering::is_ne),
            Filter::Gt(f, v) => cmp(f, v).map(Ordering::is_gt),
            Filter::Ge(f, v) => cmp(f, v).map(Ordering::is_ge),
            Filter::Lt(f, v) => cmp(f, v).map(Ordering::is_lt),
            Filter::Le(f, v) => cmp(f, v).map(Ordering::is_le),
            Filter::In(f, vs) => kleene(vs.iter().map(|v| cmp(f, v).map(Ordering::is_eq)), true),
            Filter::Contains(f, s) => match values.get(f.as_str())? {
                FieldValue::StringList(list) => Some(list.iter().any(|x| x == s)),
                _ => None,
            },
            Filter::IsNull(f) => Some(!values.contains_key(f.as_str())),
            Filter::And(all) => kleene(all.iter().map(|x| x.truth(values)), false),
            Filter::Or(all) => kleene(all.iter().map(|x| x.truth(values)), true),
            Filter::Not(x) => x.truth(values).map(|t| !t),
        }
    }
}

/// Kleene's OR (`absorbing = true`) or AND (`absorbing = false`) of `truths`: the absorbing
/// value if any is it, else unknown if any is unknown, else the other value (so an empty OR
/// is false and an empty AND true).
fn kleene(truths: impl Iterator<Item = Option<bool>>, absorbing: bool) -> Option<bool> {
    let mut unknown = false;
    for truth in truths {
        match truth {
            Some(t) if t == absorbing => return Some(absorbing),
            None => unknown = true,
            Some(_) => {}
        }
    }
    if unknown { None } else { Some(!absorbing) }
}

/// The order of two values of comparable types (`None` for other pairs and NaN).
fn compare(a: &FieldValue, b: &FieldValue) -> Option<std::cmp::Ordering> {
    use FieldValue::{Float, Integer, String as Text, Timestamp};
    match (a, b) {
        (Text(x), Text(y)) => Some(x.as_bytes().cmp(y.as_bytes())),
        (Integer(x), Integer(y)) | (Timestamp(x), Timestamp(y)) => Some(x.cmp(y)),
        (Float(x), Float(y)) => x.partial_cmp(y),
        #[allow(clippy::cast_precision_loss)] // SQL compares mixed numbers as floats too
        (Integer(x), Float(y)) => (*x as f64).partial_cmp(y),
        #[allow(clippy::cast_precision_loss)]
        (Float(x), Integer(y)) => x.partial_cmp(&(*y as f64)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn record(pairs: &[(&str, FieldValue)]) -> BTreeMap<String, FieldValue> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn matches_follows_three_valued_logic() {
        let full = record(&[
            ("kind", "guide".into()),
            ("year", 2024i64.into()),
            ("score", 0.5f64.into()),
            ("tags", vec!["rust".to_string(), "db".to_string()].into()),
        ]);
        let bare = record(&[]);
        assert!(Filter::eq("kind", "guide").matches(&full));
        assert!(!Filter::eq("kind", "api").matches(&full));
        assert!(Filter::range("year", 2020i64, 2025i64).matches(&full));
        assert!(
            Filter::gt("score", 0i64).matches(&full),
            "integers compare with floats"
        );
        assert!(Filter::contains("tags", "db").matches(&full));
        assert!(!Filter::contains("tags", "go").matches(&full));
        assert!(Filter::is_in("kind", ["api", "guide"]).matches(&full));
        // A null field: every comparison is unknown, and so is its negation.
        for f in [
            Filter::eq("kind", "guide"),
            Filter::ne("kind", "guide"),
            Filter::eq("kind", "guide").not(),
            Filter::contains("tags", "db"),
            Filter::is_in("kind", ["guide"]),
        ] {
            assert!(!f.matches(&bare), "{f:?}");
        }
        assert!(Filter::is_null("kind").matches(&bare));
        assert!(!Filter::is_null("kind").matches(&full));
        // Kleene: unknown OR true is true; unknown AND false is false (so NOT of it matches).
        let unknown = Filter::eq("missing", "x");
        assert!(
            unknown
                .clone()
                .or(Filter::eq("kind", "guide"))
                .matches(&full)
        );
        assert!(
            unknown
                .clone()
                .and(Filter::eq("kind", "api"))
                .not()
                .matches(&full)
        );
        assert!(
            !unknown
                .clone()
                .and(Filter::eq("kind", "guide"))
                .matches(&full)
        );
        assert!(Filter::And(vec![]).matches(&bare));
        assert!(!Filter::Or(vec![]).matches(&bare));
    }
}
