//! The CA's gRPC face: authenticate the caller, then sign its CSR for the caller's identity.

use crate::auth::Authenticator;
use crate::ca::{Ca, CaError, WorkloadId};
use crate::server::status::Status as MeshStatus;
use sinew_proto::ca::v1 as pb;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tonic::{Request, Response, Status};

pub struct CertificateService {
    pub ca: Arc<Ca>,
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
        let id = WorkloadId {
            namespace: caller.namespace,
            service_account: caller.service_account,
        };
        let issued = self.ca.issue(&req.csr, &id, ttl).map_err(|e| {
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
        tracing::debug!(identity = %issued.identity, "issued a workload certificate");
        Ok(Response::new(pb::CreateCertificateResponse {
            cert_chain: issued.chain_pem,
            trust_bundle: self.ca.trust_bundle(),
            identity: issued.identity,
        }))
    }
}
