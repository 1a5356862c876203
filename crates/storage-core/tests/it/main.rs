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
