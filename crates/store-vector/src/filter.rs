//! `hybridstore_core::vector::Filter` → a DataFusion expression tree for LanceDB.
//!
//! Values become literals (`lit`), fields become column references to validated names, so
//! no value can change the predicate's structure: there is no SQL text to escape. Where
//! LanceDB only takes SQL text (`count_rows`), the tree is printed by LanceDB's own
//! unparser (`expr_to_sql_string`), which quotes literals.

use hybridstore_core::vector::{FieldValue, Filter};
use lancedb::datafusion::functions_nested::expr_fn::array_has;
use lancedb::expr::{DfExpr, col, lit};

/// A value as a DataFusion literal.
fn literal(value: &FieldValue) -> DfExpr {
    match value {
        FieldValue::String(s) => lit(s.clone()),
        FieldValue::Integer(n) | FieldValue::Timestamp(n) => lit(*n),
        FieldValue::Float(x) => lit(*x),
        // Validation refuses comparisons with lists; a list literal never reaches here.
        FieldValue::StringList(items) => lit(items.join(",")),
    }
}

/// The expression for `filter`. Fields must have been validated against the collection.
pub(crate) fn to_expr(filter: &Filter) -> DfExpr {
    match filter {
        Filter::Eq(f, v) => col(f).eq(literal(v)),
        Filter::Ne(f, v) => col(f).not_eq(literal(v)),
        Filter::Gt(f, v) => col(f).gt(literal(v)),
        Filter::Ge(f, v) => col(f).gt_eq(literal(v)),
        Filter::Lt(f, v) => col(f).lt(literal(v)),
        Filter::Le(f, v) => col(f).lt_eq(literal(v)),
        Filter::In(f, vs) => col(f).in_list(vs.iter().map(literal).collect(), false),
        Filter::Contains(f, s) => array_has(col(f), lit(s.clone())),
        Filter::IsNull(f) => col(f).is_null(),
        Filter::And(all) => all
            .iter()
            .map(to_expr)
            .reduce(DfExpr::and)
            .unwrap_or_else(|| lit(true)),
        Filter::Or(any) => any
            .iter()
            .map(to_expr)
            .reduce(DfExpr::or)
            .unwrap_or_else(|| lit(false)),
        Filter::Not(inner) => !to_expr(inner),
    }
}
