//! Which IP addresses a customer-chosen URL may reach: [`classify`] names
//! the class of every address that is not an ordinary public one (loopback,
//! private, link-local, CGNAT, multicast, broadcast, reserved, cloud
//! metadata), including the IPv6 spellings that embed an IPv4 address
//! (mapped, compatible, NAT64, 6to4), since a dual-stack socket or a gateway
//! turns those into the IPv4 address they carry.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

/// Why an address may not be reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Forbidden {
    /// `0.0.0.0/8`, `::`: "this host" on most stacks.
    Unspecified,
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// RFC 1918, `fc00::/7` (unique local), `fec0::/10` (old site-local), local NAT64.
    Private,
    /// `169.254.0.0/16`, `fe80::/10`.
    LinkLocal,
    /// `100.64.0.0/10`, carrier-grade NAT: often a provider's internal network.
    Shared,
    /// `224.0.0.0/4`, `ff00::/8`.
    Multicast,
    /// `255.255.255.255`.
    Broadcast,
    /// Documentation, benchmarking, protocol-assignment and future-use
    /// ranges, Teredo, IPv4-compatible IPv6, and IPv6 outside `2000::/3`.
    Reserved,
    /// A cloud provider's instance metadata or host service (AWS, GCP, Azure,
    /// Alibaba, Oracle), even where the range above would say otherwise.
    CloudMetadata,
}

impl Forbidden {
    /// "a loopback address" and so on.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Unspecified => "an unspecified address",
            Self::Loopback => "a loopback address",
            Self::Private => "a private address",
            Self::LinkLocal => "a link-local address",
            Self::Shared => "a shared (carrier-grade NAT) address",
            Self::Multicast => "a multicast address",
            Self::Broadcast => "a broadcast address",
            Self::Reserved => "a reserved address",
            Self::CloudMetadata => "a cloud metadata address",
        }
    }
}

impl fmt::Display for Forbidden {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// Cloud metadata and host-service addresses outside the ranges that are
/// refused anyway (169.254.169.254 is link-local, fd00:ec2::254 unique local;
/// they are listed so the refusal names them for what they are).
const METADATA_V4: [Ipv4Addr; 5] = [
    // AWS, GCP, Azure, OpenStack, Oracle, DigitalOcean…
    Ipv4Addr::new(169, 254, 169, 254),
    // AWS ECS task metadata.
    Ipv4Addr::new(169, 254, 170, 2),
    // Azure WireServer: a public address every Azure VM can reach.
    Ipv4Addr::new(168, 63, 129, 16),
    // Alibaba Cloud.
    Ipv4Addr::new(100, 100, 100, 200),
    // Oracle Cloud (legacy).
    Ipv4Addr::new(192, 0, 0, 192),
];

/// Why `ip` may not be reached, or `None` for an ordinary public address.
pub fn classify(ip: IpAddr) -> Option<Forbidden> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<Forbidden> {
    if METADATA_V4.contains(&ip) {
        return Some(Forbidden::CloudMetadata);
    }
    let n = u32::from(ip);
    let within = |net: [u8; 4], bits: u32| {
        let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
        n & mask == u32::from(Ipv4Addr::from(net)) & mask
    };
    let class = if within([0, 0, 0, 0], 8) {
        Forbidden::Unspecified
    } else if within([127, 0, 0, 0], 8) {
        Forbidden::Loopback
    } else if within([10, 0, 0, 0], 8)
        || within([172, 16, 0, 0], 12)
        || within([192, 168, 0, 0], 16)
    {
        Forbidden::Private
    } else if within([169, 254, 0, 0], 16) {
        Forbidden::LinkLocal
    } else if within([100, 64, 0, 0], 10) {
        Forbidden::Shared
    } else if within([224, 0, 0, 0], 4) {
        Forbidden::Multicast
    } else if n == u32::MAX {
        Forbidden::Broadcast
    } else if within([240, 0, 0, 0], 4)
        || within([192, 0, 0, 0], 24)
        || within([192, 0, 2, 0], 24)
        || within([192, 88, 99, 0], 24)
        || within([198, 18, 0, 0], 15)
        || within([198, 51, 100, 0], 24)
        || within([203, 0, 113, 0], 24)
    {
        Forbidden::Reserved
    } else {
        return None;
    };
    Some(class)
}

fn classify_v6(ip: Ipv6Addr) -> Option<Forbidden> {
    let s = ip.segments();
    let embedded = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    // ::ffff:a.b.c.d reaches a.b.c.d on a dual-stack socket.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return classify_v4(v4);
    }
    if ip.is_unspecified() {
        return Some(Forbidden::Unspecified);
    }
    if ip.is_loopback() {
        return Some(Forbidden::Loopback);
    }
    // AWS (fd00:ec2::254 and its DNS/NTP neighbours) and GCP (fd20:ce::254).
    if (s[0] == 0xfd00 && s[1] == 0x0ec2) || ip == Ipv6Addr::new(0xfd20, 0xce, 0, 0, 0, 0, 0, 0x254)
    {
        return Some(Forbidden::CloudMetadata);
    }
    // ::a.b.c.d, IPv4-compatible (deprecated): name what it embeds when that is worse.
    if s[..6].iter().all(|&x| x == 0) {
        return Some(classify_v4(embedded(s[6], s[7])).unwrap_or(Forbidden::Reserved));
    }
    // 64:ff9b::/96, NAT64: a gateway translates it to the embedded IPv4 address.
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6].iter().all(|&x| x == 0) {
        return classify_v4(embedded(s[6], s[7]));
    }
    // 64:ff9b:1::/48, local-use NAT64.
    if s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1 {
        return Some(Forbidden::Private);
    }
    // 2002::/16, 6to4: the relay sends it to the embedded IPv4 address.
    if s[0] == 0x2002 {
        return classify_v4(embedded(s[1], s[2]));
    }
    let class = if s[0] & 0xfe00 == 0xfc00 || s[0] & 0xffc0 == 0xfec0 {
        Forbidden::Private
    } else if s[0] & 0xffc0 == 0xfe80 {
        Forbidden::LinkLocal
    } else if s[0] & 0xff00 == 0xff00 {
        Forbidden::Multicast
    } else if s[0] & 0xe000 != 0x2000
        // 2001::/23: IETF protocol assignments (Teredo, ORCHID, …).
        || (s[0] == 0x2001 && s[1] < 0x0200)
        // 2001:db8::/32 and 3fff::/20: documentation.
        || (s[0] == 0x2001 && s[1] == 0x0db8)
        || s[0] & 0xfff0 == 0x3ff0
    {
        Forbidden::Reserved
    } else {
        return None;
    };
    Some(class)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(ip: &str) -> Option<Forbidden> {
        classify(ip.parse().unwrap())
    }

    #[test]
    fn classifies_ipv4() {
        use Forbidden::*;
        for (ip, want) in [
            ("0.0.0.0", Some(Unspecified)),
            ("0.1.2.3", Some(Unspecified)),
            ("127.0.0.1", Some(Loopback)),
            ("127.255.255.254", Some(Loopback)),
            ("10.0.0.1", Some(Private)),
            ("172.16.0.1", Some(Private)),
            ("172.31.255.255", Some(Private)),
            ("192.168.1.1", Some(Private)),
            ("169.254.1.1", Some(LinkLocal)),
            ("169.254.169.254", Some(CloudMetadata)),
            ("169.254.170.2", Some(CloudMetadata)),
            ("168.63.129.16", Some(CloudMetadata)),
            ("100.100.100.200", Some(CloudMetadata)),
            ("192.0.0.192", Some(CloudMetadata)),
            ("100.64.0.1", Some(Shared)),
            ("100.127.255.255", Some(Shared)),
            ("224.0.0.1", Some(Multicast)),
            ("239.255.255.250", Some(Multicast)),
            ("255.255.255.255", Some(Broadcast)),
            ("240.0.0.1", Some(Reserved)),
            ("192.0.2.10", Some(Reserved)),
            ("198.18.0.1", Some(Reserved)),
            ("198.51.100.7", Some(Reserved)),
            ("203.0.113.9", Some(Reserved)),
            ("192.0.0.8", Some(Reserved)),
            // Public neighbours of the ranges above.
            ("8.8.8.8", None),
            ("1.1.1.1", None),
            ("172.15.255.255", None),
            ("172.32.0.0", None),
            ("100.63.255.255", None),
            ("100.128.0.0", None),
            ("169.253.255.255", None),
            ("11.0.0.0", None),
            ("223.255.255.255", None),
            ("198.20.0.0", None),
            ("168.63.129.17", None),
        ] {
            assert_eq!(class(ip), want, "{ip}");
        }
    }

    #[test]
    fn classifies_ipv6_and_embedded_ipv4() {
        use Forbidden::*;
        for (ip, want) in [
            ("::", Some(Unspecified)),
            ("::1", Some(Loopback)),
            ("::ffff:127.0.0.1", Some(Loopback)),
            ("::ffff:10.0.0.1", Some(Private)),
            ("::ffff:169.254.169.254", Some(CloudMetadata)),
            ("::ffff:8.8.8.8", None),
            ("::127.0.0.1", Some(Loopback)),
            ("::8.8.8.8", Some(Reserved)),
            ("64:ff9b::127.0.0.1", Some(Loopback)),
            ("64:ff9b::a9fe:a9fe", Some(CloudMetadata)),
            ("64:ff9b::8.8.8.8", None),
            ("64:ff9b:1::1", Some(Private)),
            ("2002:7f00:1::", Some(Loopback)),
            ("2002:0a00:0001::1", Some(Private)),
            ("2002:0808:0808::1", None),
            ("fc00::1", Some(Private)),
            ("fd12:3456::1", Some(Private)),
            ("fd00:ec2::254", Some(CloudMetadata)),
            ("fd00:ec2::253", Some(CloudMetadata)),
            ("fd20:ce::254", Some(CloudMetadata)),
            ("fec0::1", Some(Private)),
            ("fe80::1", Some(LinkLocal)),
            ("febf::1", Some(LinkLocal)),
            ("ff02::1", Some(Multicast)),
            ("2001:db8::1", Some(Reserved)),
            ("2001::1", Some(Reserved)),
            ("3fff::1", Some(Reserved)),
            ("100::1", Some(Reserved)),
            ("4000::1", Some(Reserved)),
            ("2606:4700:4700::1111", None),
            ("2a00:1450:4001::200e", None),
            ("2001:4860:4860::8888", None),
        ] {
            assert_eq!(class(ip), want, "{ip}");
        }
    }
}
