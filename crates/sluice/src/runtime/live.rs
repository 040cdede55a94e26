//! What the current configuration serves, kept up to date across reloads: the pools and the
//! bound addresses, for status pages, the admin API and tests. Read-only outside `runtime`.
//! It is the admin endpoint's `View` (the spec it shows frontends and limits from) and the
//! agent endpoint's `Edges` (the pools of the http frontends' backends).

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::balance::Pool;
use crate::spec::Spec;

/// The current pools and addresses (swapped as a whole by each reload).
#[derive(Debug, Default)]
pub struct Live {
    /// (backend name, pool) in configuration order.
    pools: ArcSwap<Vec<(String, Arc<Pool>)>>,
    addrs: ArcSwap<Vec<(String, SocketAddr)>>,
    spec: ArcSwap<Spec>,
}

impl Live {
    pub(crate) fn set(
        &self,
        pools: Vec<(String, Arc<Pool>)>,
        addrs: Vec<(String, SocketAddr)>,
        spec: &Spec,
    ) {
        self.pools.store(Arc::new(pools));
        self.addrs.store(Arc::new(addrs));
        self.spec.store(Arc::new(spec.clone()));
    }

    /// The current pool of backend `name` (a changed backend gets a new pool on reload).
    pub fn pool(&self, name: &str) -> Option<Arc<Pool>> {
        self.pools
            .load()
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| p.clone())
    }

    /// Every current pool, in configuration order.
    pub fn pools(&self) -> Vec<Arc<Pool>> {
        self.pools.load().iter().map(|(_, p)| p.clone()).collect()
    }

    /// Every bound address with its frontend name, in configuration order.
    pub fn local_addrs(&self) -> Vec<(String, SocketAddr)> {
        self.addrs.load().as_ref().clone()
    }
}

impl crate::admin::View for Live {
    fn pools(&self) -> Vec<Arc<Pool>> {
        Live::pools(self)
    }

    fn spec(&self) -> Arc<Spec> {
        self.spec.load_full()
    }

    fn local_addrs(&self) -> Vec<(String, SocketAddr)> {
        Live::local_addrs(self)
    }
}

impl crate::health::endpoint::Edges for Live {
    fn app_pools(&self) -> Vec<Arc<Pool>> {
        let spec = self.spec.load();
        self.pools
            .load()
            .iter()
            .filter(|(name, _)| {
                spec.frontends
                    .iter()
                    .any(|f| f.mode == crate::spec::Mode::Http && &f.backend == name)
            })
            .map(|(_, p)| p.clone())
            .collect()
    }
}
