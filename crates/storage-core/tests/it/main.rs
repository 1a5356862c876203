//! Conformance of the in-memory reference store and the tenant layer.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers report failures by panicking

mod memory_store {
    use hybridstore_core::{MemoryStore, conformance::Fixture};

    hybridstore_core::conformance_tests!(|| async { Fixture::new(MemoryStore::new()) });
}

/// The tenant layer over a store that already holds other tenants' keys (including ones whose
/// names extend this tenant's): the suite's "fresh store is empty" and "scan yields exactly"
/// checks then also prove isolation.
mod namespaced_memory_store {
    use hybridstore_core::conformance::Fixture;
    use hybridstore_core::{Bytes, Key, KvStore, MemoryStore, Namespaced, TenantId};

    async fn fixture() -> Fixture {
        let shared = MemoryStore::new();
        for (tenant, key) in [("tenant-b", "a"), ("tenant-ab", "a/b"), ("tenant-a.", "x")] {
            Namespaced::new(shared.clone(), TenantId::new(tenant).unwrap())
                .put(&Key::new(key).unwrap(), Bytes::from_static(b"other tenant"))
                .await
                .unwrap();
        }
        shared
            .put(&Key::new("t/tenant-a").unwrap(), Bytes::new())
            .await
            .unwrap();
        shared
            .put(&Key::new("t/tenant-a0").unwrap(), Bytes::new())
            .await
            .unwrap();
        Fixture::new(Namespaced::new(shared, TenantId::new("tenant-a").unwrap()))
    }

    hybridstore_core::conformance_tests!(fixture);
}

/// Errors through `ErrorContext` keep the store's own context and gain nothing else.
mod error_context_memory_store {
    use hybridstore_core::conformance::Fixture;
    use hybridstore_core::{ErrorContext, MemoryStore};

    hybridstore_core::conformance_tests!(|| async {
        Fixture::new(ErrorContext::new(MemoryStore::new(), "memory"))
    });
}

/// Every method of a layer reaches the same method of the store below it (so a backend's
/// batched or ranged implementation is used), except where the layer's semantics need the
/// trait's default.
mod forwarding {
    use std::sync::Arc;

    use futures::TryStreamExt;
    use hybridstore_core::fault::CallRecorder;
    use hybridstore_core::{
        Bytes, ErrorContext, Key, KeyRange, KvStore, MemoryStore, Namespaced, PutOptions, TenantId,
        WriteBatch,
    };

    fn key(s: &'static str) -> Key {
        Key::new(s).unwrap()
    }

    /// Calls every method once on `store` and returns, per method, what `recorder` saw.
    async fn calls_per_method(
        store: &dyn KvStore,
        recorder: &CallRecorder<MemoryStore>,
    ) -> Vec<(&'static str, Vec<&'static str>)> {
        let k = key("k");
        let mut seen = Vec::new();
        macro_rules! call {
            ($name:literal, $e:expr) => {{
                recorder.take_calls();
                $e;
                seen.push(($name, recorder.take_calls()));
            }};
        }
        call!(
            "put_with",
            store
                .put_with(&k, Bytes::from_static(b"v"), &PutOptions::default())
                .await
                .unwrap()
        );
        call!(
            "put",
            store.put(&k, Bytes::from_static(b"value")).await.unwrap()
        );
        call!("get", store.get(&k).await.unwrap());
        call!(
            "get_many",
            store.get_many(&[k.clone(), key("other")]).await.unwrap()
        );
        call!("head", store.head(&k).await.unwrap());
        call!("exists", store.exists(&k).await.unwrap());
        call!("get_range", store.get_range(&k, 1..3).await.unwrap());
        call!(
            "scan",
            store
                .scan(KeyRange::all(), None)
                .try_collect::<Vec<_>>()
                .await
                .unwrap()
        );
        call!(
            "scan_meta",
            store
                .scan_meta(KeyRange::all(), None)
                .try_collect::<Vec<_>>()
                .await
                .unwrap()
        );
        call!(
            "list_keys",
            store.list_keys(KeyRange::all(), None).await.unwrap()
        );
        call!("write_batch", {
            let mut batch = WriteBatch::new();
            batch.put(key("b"), "b");
            store.write_batch(batch).await.unwrap()
        });
        call!("stats", store.stats().await.unwrap());
        call!("delete", store.delete(&k).await.unwrap());
        call!("clear", store.clear().await.unwrap());
        seen
    }

    #[tokio::test]
    async fn namespaced_calls_the_same_method_below_it_but_for_its_own_clear_and_stats() {
        let recorder = Arc::new(CallRecorder::new(MemoryStore::new()));
        let tenant = Namespaced::new(recorder.clone(), TenantId::new("t1").unwrap());
        for (method, below) in calls_per_method(&tenant, &recorder).await {
            let expected: Vec<&str> = match method {
                // The tenant's own keys only: a scoped listing, then a batch of deletes, until
                // a listing comes back empty.
                "clear" => vec!["list_keys", "write_batch", "list_keys"],
                // Counted from the tenant's range, not the inner store's totals.
                "stats" => vec!["scan_meta"],
                same => vec![same],
            };
            assert_eq!(below, expected, "Namespaced::{method}");
        }
    }

    #[tokio::test]
    async fn error_context_calls_the_same_method_below_it() {
        let recorder = Arc::new(CallRecorder::new(MemoryStore::new()));
        let layer = ErrorContext::new(recorder.clone(), "memory");
        for (method, below) in calls_per_method(&layer, &recorder).await {
            assert_eq!(below, vec![method], "ErrorContext::{method}");
        }
    }
}

/// `ErrorContext` names the operation, the key and the backend of every error, once, and
/// keeps the kind, message and retryability of the error below it.
mod error_context {
    use futures::TryStreamExt;
    use hybridstore_core::fault::FailingStore;
    use hybridstore_core::{
        Bytes, Error, ErrorContext, ErrorKind, Key, KeyRange, KvStore, Namespaced, TenantId,
        WriteBatch,
    };

    fn key(s: &'static str) -> Key {
        Key::new(s).unwrap()
    }

    async fn every_error(store: &dyn KvStore) -> Vec<(&'static str, Error)> {
        let k = key("doc/1");
        let mut batch = WriteBatch::new();
        batch.put(key("doc/2"), "x");
        vec![
            ("get", store.get(&k).await.unwrap_err()),
            ("head", store.head(&k).await.unwrap_err()),
            (
                "put",
                store.put(&k, Bytes::from_static(b"v")).await.unwrap_err(),
            ),
            ("delete", store.delete(&k).await.unwrap_err()),
            ("exists", store.exists(&k).await.unwrap_err()),
            ("get_range", store.get_range(&k, 0..1).await.unwrap_err()),
            (
                "get_many",
                store.get_many(std::slice::from_ref(&k)).await.unwrap_err(),
            ),
            (
                "scan",
                store
                    .scan(KeyRange::all(), None)
                    .try_collect::<Vec<_>>()
                    .await
                    .unwrap_err(),
            ),
            (
                "scan_meta",
                store
                    .scan_meta(KeyRange::all(), None)
                    .try_collect::<Vec<_>>()
                    .await
                    .unwrap_err(),
            ),
            (
                "list_keys",
                store.list_keys(KeyRange::all(), None).await.unwrap_err(),
            ),
            ("write_batch", store.write_batch(batch).await.unwrap_err()),
            ("clear", store.clear().await.unwrap_err()),
            ("stats", store.stats().await.unwrap_err()),
        ]
    }

    fn context_of<'a>(e: &'a Error, name: &str) -> Vec<&'a str> {
        e.context()
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    #[tokio::test]
    async fn every_error_names_its_operation_key_and_backend_once() {
        let store = ErrorContext::new(
            FailingStore::new(ErrorKind::Unavailable, "server went away"),
            "sqlite",
        );
        for (method, e) in every_error(&store).await {
            assert_eq!(e.operation(), Some(method), "{e}");
            assert_eq!(e.kind(), ErrorKind::Unavailable, "{method}: kind kept");
            assert!(e.is_retryable(), "{method}: retryability kept");
            assert_eq!(e.message(), "server went away", "{method}: message kept");
            assert_eq!(context_of(&e, "backend"), ["sqlite"], "{method}: {e}");
            let single_key = matches!(
                method,
                "get" | "head" | "put" | "delete" | "exists" | "get_range"
            );
            let keys = context_of(&e, "key");
            assert_eq!(
                keys,
                if single_key { vec!["doc/1"] } else { vec![] },
                "{method}: {e}"
            );
        }
    }

    #[tokio::test]
    async fn two_context_layers_name_each_thing_once() {
        let store = ErrorContext::new(
            ErrorContext::new(
                FailingStore::new(ErrorKind::Corrupted, "checksum mismatch"),
                "file",
            ),
            "file",
        );
        let e = store.get(&key("doc/1")).await.unwrap_err();
        assert_eq!(e.operations(), ["get"]);
        assert_eq!(
            e.to_string(),
            "corrupted: checksum mismatch (operation: get, key: doc/1, backend: file)"
        );
    }

    #[tokio::test]
    async fn an_operation_a_layer_runs_for_another_is_kept_below_it() {
        // A tenant's `clear` lists its keys first: the listing failed, inside the clear.
        let store = ErrorContext::new(
            Namespaced::new(
                ErrorContext::new(
                    FailingStore::new(ErrorKind::Unavailable, "server went away"),
                    "postgres",
                ),
                TenantId::new("acme").unwrap(),
            ),
            "postgres",
        );
        let e = store.clear().await.unwrap_err();
        assert_eq!(e.operations(), ["clear", "list_keys"]);
        assert_eq!(context_of(&e, "backend"), ["postgres"]);
        assert!(
            e.to_string().contains("operation: clear > list_keys"),
            "{e}"
        );
    }
}

/// The S3 test server every crate uses: several buckets, and a stop and restart that keeps
/// its data and its ports (what a test of "S3 went away and came back" needs).
mod seaweed_s3 {
    use hybridstore_core::services::SeaweedS3;

    #[test]
    fn keeps_its_objects_and_ports_across_a_restart_and_serves_several_buckets() {
        let Some(mut s3) = SeaweedS3::start_with_buckets(&["first", "second"]) else {
            return;
        };
        assert_eq!(s3.buckets(), ["first", "second"]);
        assert_eq!(s3.uri("p"), "s3://first/p");
        assert_eq!(s3.put_object("first", "a.txt", b"alpha"), Some(200));
        assert_eq!(s3.put_object("second", "a.txt", b"beta"), Some(200));
        assert_eq!(
            s3.get_object("second", "a.txt").as_deref(),
            Some(&b"beta"[..])
        );
        let endpoint = s3.endpoint();

        s3.stop();
        assert!(!s3.is_running());
        assert_eq!(
            s3.get_object("first", "a.txt"),
            None,
            "a stopped server answers nothing"
        );
        assert_eq!(s3.put_object("first", "b.txt", b"lost"), None);

        s3.restart();
        assert!(s3.is_running());
        assert_eq!(s3.endpoint(), endpoint, "the same ports");
        assert_eq!(
            s3.get_object("first", "a.txt").as_deref(),
            Some(&b"alpha"[..])
        );
        assert_eq!(
            s3.get_object("second", "a.txt").as_deref(),
            Some(&b"beta"[..])
        );
        assert_eq!(s3.get_object("first", "b.txt"), None);
    }
}

/// The write barrier passes the suite, and holds writes back exactly while held.
mod write_barrier {
    use std::sync::Arc;

    use hybridstore_core::conformance::Fixture;
    use hybridstore_core::fault::PausingStore;
    use hybridstore_core::{Bytes, Key, KvStore, MemoryStore, WriteBarrier};

    hybridstore_core::conformance_tests!(|| async {
        Fixture::new(WriteBarrier::new(MemoryStore::new()))
    });

    fn key(s: &'static str) -> Key {
        Key::new(s).unwrap()
    }

    #[tokio::test]
    async fn a_hold_waits_for_the_write_in_flight_and_keeps_the_next_one_out() {
        let store = Arc::new(WriteBarrier::new(PausingStore::new(MemoryStore::new())));
        let pause = store.inner().pause_next_put(&key("first"));
        let writer = store.clone();
        let first = tokio::spawn(async move {
            writer
                .put(&key("first"), Bytes::from_static(b"1"))
                .await
                .unwrap()
        });
        pause.reached.await.unwrap();

        // The hold cannot begin while "first" is in flight.
        let barrier = store.barrier();
        let mut hold = tokio::spawn(async move { barrier.hold().await });
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
        assert!(!hold.is_finished(), "a hold began under a write in flight");
        pause.resume.send(()).unwrap();
        first.await.unwrap();
        let held = (&mut hold).await.unwrap();

        // While held, a write waits; reads go on.
        let writer = store.clone();
        let second = tokio::spawn(async move {
            writer
                .put(&key("second"), Bytes::from_static(b"2"))
                .await
                .unwrap()
        });
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
        assert!(!second.is_finished(), "a write passed a held barrier");
        assert_eq!(
            store.get(&key("first")).await.unwrap().as_deref(),
            Some(&b"1"[..])
        );
        assert!(store.get(&key("second")).await.unwrap().is_none());
        drop(held);
        second.await.unwrap();
        assert!(store.get(&key("second")).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn a_dropped_write_keeps_its_permit_until_it_lands() {
        let store = Arc::new(WriteBarrier::new(PausingStore::new(MemoryStore::new())));
        let pause = store.inner().pause_next_put(&key("k"));
        let writer = store.clone();
        let caller =
            tokio::spawn(async move { writer.put(&key("k"), Bytes::from_static(b"v")).await });
        pause.reached.await.unwrap();
        caller.abort(); // the caller gives up; the write goes on
        let _ = caller.await;
        let barrier = store.barrier();
        let mut hold = tokio::spawn(async move { barrier.hold().await });
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
        assert!(
            !hold.is_finished(),
            "the abandoned write's permit was released early"
        );
        pause.resume.send(()).unwrap();
        pause.landed.await.unwrap();
        let _held = (&mut hold).await.unwrap();
        assert!(store.get(&key("k")).await.unwrap().is_some());
    }
}
