//! Sans-IO VRRPv3 (RFC 5798). Filled in by the VRRP issue.
