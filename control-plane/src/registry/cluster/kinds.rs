//! The kinds the Kubernetes source watches: the built-in ones every cluster serves, and the
//! custom ones (Istio's and Sinew's DestinationRule and VirtualService, Istio's Telemetry,
//! PeerAuthentication and AuthorizationPolicy) that
//! exist only while their CustomResourceDefinition does.

use kube::core::{ApiResource, GroupVersionKind};

/// A kind the source watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KindId {
    Namespace,
    ServiceAccount,
    Service,
    EndpointSlice,
    Pod,
    /// Watched (metadata only) to learn which custom kinds exist.
    CustomResourceDefinition,
    Custom(CustomKind),
}

/// A custom kind, watched only while its CRD is installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CustomKind {
    IstioDestinationRule,
    IstioVirtualService,
    SinewDestinationRule,
    SinewVirtualService,
    IstioTelemetry,
    IstioPeerAuthentication,
    IstioAuthorizationPolicy,
}

/// How many custom kinds there are.
pub const CUSTOM_KINDS: usize = 7;

/// The built-in kinds, in the order their first lists are awaited.
pub const BUILTIN: [KindId; 5] = [
    KindId::Namespace,
    KindId::ServiceAccount,
    KindId::Service,
    KindId::EndpointSlice,
    KindId::Pod,
];

// === impl KindId ===

impl KindId {
    /// The kind's name as `kubectl` prints it (`Service`, `DestinationRule.networking.istio.io`).
    pub fn name(self) -> &'static str {
        match self {
            KindId::Namespace => "Namespace",
            KindId::ServiceAccount => "ServiceAccount",
            KindId::Service => "Service",
            KindId::EndpointSlice => "EndpointSlice",
            KindId::Pod => "Pod",
            KindId::CustomResourceDefinition => "CustomResourceDefinition",
            KindId::Custom(c) => c.qualified_name(),
        }
    }
}

impl std::fmt::Display for KindId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

// === impl CustomKind ===

impl CustomKind {
    pub const ALL: [CustomKind; CUSTOM_KINDS] = [
        CustomKind::IstioDestinationRule,
        CustomKind::IstioVirtualService,
        CustomKind::SinewDestinationRule,
        CustomKind::SinewVirtualService,
        CustomKind::IstioTelemetry,
        CustomKind::IstioPeerAuthentication,
        CustomKind::IstioAuthorizationPolicy,
    ];

    pub fn group(self) -> &'static str {
        match self {
            CustomKind::IstioDestinationRule | CustomKind::IstioVirtualService => {
                "networking.istio.io"
            }
            CustomKind::SinewDestinationRule | CustomKind::SinewVirtualService => "sinew.dev",
            CustomKind::IstioTelemetry => "telemetry.istio.io",
            CustomKind::IstioPeerAuthentication | CustomKind::IstioAuthorizationPolicy => {
                "security.istio.io"
            }
        }
    }

    pub fn kind(self) -> &'static str {
        match self {
            CustomKind::IstioDestinationRule | CustomKind::SinewDestinationRule => {
                "DestinationRule"
            }
            CustomKind::IstioVirtualService | CustomKind::SinewVirtualService => "VirtualService",
            CustomKind::IstioTelemetry => "Telemetry",
            CustomKind::IstioPeerAuthentication => "PeerAuthentication",
            CustomKind::IstioAuthorizationPolicy => "AuthorizationPolicy",
        }
    }

    pub fn plural(self) -> &'static str {
        match self {
            CustomKind::IstioDestinationRule | CustomKind::SinewDestinationRule => {
                "destinationrules"
            }
            CustomKind::IstioVirtualService | CustomKind::SinewVirtualService => "virtualservices",
            CustomKind::IstioTelemetry => "telemetries",
            CustomKind::IstioPeerAuthentication => "peerauthentications",
            CustomKind::IstioAuthorizationPolicy => "authorizationpolicies",
        }
    }

    /// The CRD's `metadata.name`: `<plural>.<group>`.
    pub fn crd_name(self) -> &'static str {
        match self {
            CustomKind::IstioDestinationRule => "destinationrules.networking.istio.io",
            CustomKind::IstioVirtualService => "virtualservices.networking.istio.io",
            CustomKind::SinewDestinationRule => "destinationrules.sinew.dev",
            CustomKind::SinewVirtualService => "virtualservices.sinew.dev",
            CustomKind::IstioTelemetry => "telemetries.telemetry.istio.io",
            CustomKind::IstioPeerAuthentication => "peerauthentications.security.istio.io",
            CustomKind::IstioAuthorizationPolicy => "authorizationpolicies.security.istio.io",
        }
    }

    fn qualified_name(self) -> &'static str {
        match self {
            CustomKind::IstioDestinationRule => "DestinationRule.networking.istio.io",
            CustomKind::IstioVirtualService => "VirtualService.networking.istio.io",
            CustomKind::SinewDestinationRule => "DestinationRule.sinew.dev",
            CustomKind::SinewVirtualService => "VirtualService.sinew.dev",
            CustomKind::IstioTelemetry => "Telemetry.telemetry.istio.io",
            CustomKind::IstioPeerAuthentication => "PeerAuthentication.security.istio.io",
            CustomKind::IstioAuthorizationPolicy => "AuthorizationPolicy.security.istio.io",
        }
    }

    /// The versions to try, preferred first. Every served version of a CRD is a view of the same
    /// objects, so one is watched: the first the API server lists (Istio ≥ 1.22 serves `v1`;
    /// older releases only `v1beta1` and `v1alpha3`).
    pub fn versions(self) -> &'static [&'static str] {
        match self.group() {
            "sinew.dev" => &["v1alpha1"],
            // Istio >= 1.22 serves `v1`; older releases only `v1alpha1`.
            "telemetry.istio.io" => &["v1", "v1alpha1"],
            // Istio >= 1.22 serves `v1`; older releases only `v1beta1`.
            "security.istio.io" => &["v1", "v1beta1"],
            _ => &["v1", "v1beta1", "v1alpha3"],
        }
    }

    pub fn api_resource(self, version: &str) -> ApiResource {
        ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(self.group(), version, self.kind()),
            self.plural(),
        )
    }
}
