//! Filters: every operator against a known set, and arbitrary strings as values (quotes,
//! backslashes, SQL) that must match exactly the records holding them and nothing else.

use hybridstore_core::vector::{
    CollectionSpec, Distance, FieldType, FieldValue, Filter, VectorQuery, VectorRecord, VectorStore,
};
use proptest::prelude::*;

use crate::support::{docs_spec, store};

fn ids(mut hits: Vec<String>) -> Vec<String> {
    hits.sort();
    hits
}

#[tokio::test]
async fn every_operator_selects_the_right_records() {
    let (_dir, store) = store().await;
    store
        .create_collection(&docs_spec(2, Distance::L2))
        .await
        .unwrap();
    let records = (0..10i64)
        .map(|i| {
            let mut r = VectorRecord::new(format!("r{i}"), vec![i as f32, 1.0])
                .with_field("kind", if i % 2 == 0 { "even" } else { "odd" })
                .with_field("year", 2015 + i)
                .with_field("rank", i as f64 / 10.0)
                .with_field("published", FieldValue::Timestamp(i * 1_000_000));
            if i < 3 {
                r = r.with_field("tags", vec!["rust".to_string(), format!("t{i}")]);
            }
            r.event_time_us = Some(i * 10);
            r
        })
        .collect();
    store.add("docs", records).await.unwrap();
    let select = |f: Filter| {
        let store = store.clone();
        async move {
            let hits = store
                .search(
                    "docs",
                    &VectorQuery::new(vec![0.0, 1.0], 100).with_filter(f.clone()),
                )
                .await
                .unwrap();
            let counted = store.count("docs", Some(&f)).await.unwrap();
            let got = ids(hits.into_iter().map(|h| h.id).collect());
            assert_eq!(
                got.len() as u64,
                counted,
                "{f:?}: search and count disagree"
            );
            got
        }
    };
    let want = |v: &[i64]| ids(v.iter().map(|i| format!("r{i}")).collect());
    assert_eq!(
        select(Filter::eq("kind", "odd")).await,
        want(&[1, 3, 5, 7, 9])
    );
    assert_eq!(
        select(Filter::ne("kind", "odd")).await,
        want(&[0, 2, 4, 6, 8])
    );
    assert_eq!(select(Filter::gt("year", 2022i64)).await, want(&[8, 9]));
    assert_eq!(select(Filter::ge("year", 2022i64)).await, want(&[7, 8, 9]));
    assert_eq!(select(Filter::lt("rank", 0.2)).await, want(&[0, 1]));
    assert_eq!(select(Filter::le("rank", 0.2)).await, want(&[0, 1, 2]));
    assert_eq!(
        select(Filter::range(
            "event_time",
            FieldValue::Timestamp(20),
            FieldValue::Timestamp(50)
        ))
        .await,
        want(&[2, 3, 4])
    );
    assert_eq!(
        select(Filter::range(
            "published",
            FieldValue::Timestamp(0),
            FieldValue::Timestamp(2_000_000)
        ))
        .await,
        want(&[0, 1])
    );
    assert_eq!(
        select(Filter::is_in("year", [2015i64, 2019, 2099])).await,
        want(&[0, 4])
    );
    assert_eq!(
        select(Filter::contains("tags", "rust")).await,
        want(&[0, 1, 2])
    );
    assert_eq!(select(Filter::contains("tags", "t1")).await, want(&[1]));
    assert_eq!(
        select(Filter::is_null("tags")).await,
        want(&[3, 4, 5, 6, 7, 8, 9])
    );
    assert_eq!(
        select(Filter::eq("kind", "odd").and(Filter::lt("year", 2020i64))).await,
        want(&[1, 3])
    );
    assert_eq!(
        select(Filter::eq("year", 2015i64).or(Filter::eq("year", 2024i64))).await,
        want(&[0, 9])
    );
    assert_eq!(
        select(Filter::eq("kind", "odd").not()).await,
        want(&[0, 2, 4, 6, 8])
    );
    // Unknown fields and mistyped values are refused before LanceDB sees them.
    for bad in [
        Filter::eq("nope", "x"),
        Filter::eq("year", "2020"),
        Filter::contains("kind", "x"),
    ] {
        let err = store
            .search(
                "docs",
                &VectorQuery::new(vec![0.0, 1.0], 5).with_filter(bad),
            )
            .await
            .unwrap_err();
        assert_eq!(err.kind(), hybridstore_core::ErrorKind::InvalidInput);
    }
}

/// Values that would break a spliced SQL predicate.
fn hostile() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("' OR '1'='1".to_string()),
        Just("x'; DROP TABLE docs; --".to_string()),
        Just("\\'".to_string()),
        Just("\"quoted\"".to_string()),
        Just("a%_*".to_string()),
        Just(String::new()),
        any::<String>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// A value can never change the filter's structure: `eq`, `ne` and `in` with arbitrary
    /// strings select exactly the records holding (or not holding) them, through search,
    /// count (SQL text from LanceDB's unparser) and delete.
    #[test]
    fn arbitrary_strings_stay_values(values in proptest::collection::vec(hostile(), 1..6), pick in any::<prop::sample::Index>()) {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let (_dir, store) = store().await;
            let spec = CollectionSpec::new("docs", 2, Distance::L2).with_field("kind", FieldType::String);
            store.create_collection(&spec).await.unwrap();
            let records: Vec<_> = values
                .iter()
                .enumerate()
                .map(|(i, v)| VectorRecord::new(format!("r{i}"), vec![i as f32, 0.0]).with_field("kind", v.clone()))
                .collect();
            store.add("docs", records).await.unwrap();
            let target = values[pick.index(values.len())].clone();
            let holding: Vec<String> = values
                .iter()
                .enumerate()
                .filter(|(_, v)| **v == target)
                .map(|(i, _)| format!("r{i}"))
                .collect();
            let query = VectorQuery::new(vec![0.0, 0.0], 100);
            let eq = store.search("docs", &query.clone().with_filter(Filter::eq("kind", target.clone()))).await.unwrap();
            prop_assert_eq!(ids(eq.into_iter().map(|h| h.id).collect()), ids(holding.clone()));
            let ne = store.count("docs", Some(&Filter::ne("kind", target.clone()))).await.unwrap();
            prop_assert_eq!(ne as usize, values.len() - holding.len());
            let within = store.count("docs", Some(&Filter::is_in("kind", [target.clone()]))).await.unwrap();
            prop_assert_eq!(within as usize, holding.len());
            let deleted = store.delete_where("docs", &Filter::eq("kind", target)).await.unwrap();
            prop_assert_eq!(deleted as usize, holding.len());
            prop_assert_eq!(store.count("docs", None).await.unwrap() as usize, values.len() - holding.len());
            Ok(())
        })?;
    }
}
