//! The CA's gRPC face: authenticate the caller, then sign its CSR for the caller's identity.

use crate::auth::Authenticator;
use crate::ca::{CaError, SharedCa, TrustBundle, WorkloadId};
use crate::server::status::Status as MeshStatus;
use sinew_proto::ca::v1 as pb;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tonic::{Request, Response, Status};

pub struct CertificateService {
    /// The signing CA (swapped by a root rotation).
    pub ca: Arc<SharedCa>,
    /// The published trust bundle, returned with every certificate (more roots than the signing
    /// CA's own during a rotation).
    pub bundle: tokio::sync::watch::Receiver<Arc<TrustBundle>>,
    pub auth: Arc<dyn Authenticator>,
    pub status: Arc<MeshStatus>,
}

#[tonic::async_trait]
impl pb::certificate_service_server::CertificateService for CertificateService {
    async fn create_certificate(
        &self,
        req: Request<pb::CreateCertificateRequest>,
    ) -> Result<Response<pb::CreateCertificateResponse>, Status> {
        let caller = super::authenticate(self.auth.as_ref(), req.metadata())
            .await
            .inspect_err(|_| {
                self.status
                    .certificates_refused
                    .fetch_add(1, Ordering::Relaxed);
            })?;
        let req = req.into_inner();
        let ttl = req
            .validity
            .filter(|d| d.seconds > 0 || d.nanos > 0)
            .map(|d| Duration::new(d.seconds.max(0) as u64, d.nanos.max(0) as u32));
        let key = crate::server::status::proxy_key(
            &caller.namespace,
            &caller.service_account,
            caller.pod.as_deref().unwrap_or_default(),
        );
        let id = WorkloadId {
            namespace: caller.namespace,
            service_account: caller.service_account,
        };
        let ca = self.ca.current();
        let issued = ca.issue(&req.csr, &id, ttl).map_err(|e| {
            self.status
                .certificates_refused
                .fetch_add(1, Ordering::Relaxed);
            match e {
                CaError::RateLimited { .. } => Status::resource_exhausted(e.to_string()),
                other => Status::invalid_argument(other.to_string()),
            }
        })?;
        self.status
            .certificates_issued
            .fetch_add(1, Ordering::Relaxed);
        self.status.record_issued(key, ca.signing_root_sha256());
        tracing::debug!(identity = %issued.identity, "issued a workload certificate");
        // The published bundle, unless it does not hold the root just signed under (only
        // between a swap and its publication): then the CA's own roots.
        let bundle = self.bundle.borrow().clone();
        let trust_bundle = if bundle.signing_root_sha256 == ca.signing_root_sha256() {
            bundle.roots.clone()
        } else {
            let mut roots = bundle.roots.clone();
            roots.extend(
                ca.trust_bundle()
                    .into_iter()
                    .filter(|r| !bundle.roots.contains(r)),
            );
            roots
        };
        Ok(Response::new(pb::CreateCertificateResponse {
            cert_chain: issued.chain_pem,
            trust_bundle,
            identity: issued.identity,
            signing_root_sha256: ca.signing_root_sha256().to_string(),
        }))
    }
}
