//! Common Azure VM sizes: vCPUs, memory and quota family, as Azure publishes them.
//!
//! Facts, not wire format, but shared the same way: the simulator accounts quota and capacity
//! with them (a size not listed is answered like a size not offered, `SkuNotAvailable`), and
//! the daemon validates pool specs against them before anything reaches Azure.

use std::sync::OnceLock;

#[derive(Debug, Clone, PartialEq)]
pub struct VmSize {
    /// Canonical casing, e.g. `Standard_NC4as_T4_v3`.
    pub name: String,
    pub vcpus: u64,
    pub memory_gib: f64,
    /// The quota family Azure's usage API reports, e.g. `standardNCASv3_T4Family`.
    pub family: &'static str,
}

/// Looks a size up case-insensitively, as Azure compares size names.
pub fn lookup(name: &str) -> Option<&'static VmSize> {
    catalog().iter().find(|s| s.name.eq_ignore_ascii_case(name))
}

pub fn catalog() -> &'static [VmSize] {
    static CATALOG: OnceLock<Vec<VmSize>> = OnceLock::new();
    CATALOG.get_or_init(build)
}

fn build() -> Vec<VmSize> {
    let mut sizes = Vec::new();
    let mut series = |fmt: &dyn Fn(u64) -> String, vcpus: &[u64], gib_per_vcpu: f64, family| {
        for &n in vcpus {
            sizes.push(VmSize {
                name: fmt(n),
                vcpus: n,
                memory_gib: n as f64 * gib_per_vcpu,
                family,
            });
        }
    };
    let general = [2, 4, 8, 16, 32, 48, 64, 96];
    series(
        &|n| format!("Standard_D{n}s_v5"),
        &general,
        4.0,
        "standardDSv5Family",
    );
    series(
        &|n| format!("Standard_D{n}ds_v5"),
        &general,
        4.0,
        "standardDDSv5Family",
    );
    series(
        &|n| format!("Standard_D{n}as_v5"),
        &general,
        4.0,
        "standardDASv5Family",
    );
    series(
        &|n| format!("Standard_D{n}s_v3"),
        &general[..7],
        4.0,
        "standardDSv3Family",
    );
    series(
        &|n| format!("Standard_D{n}s_v6"),
        &general,
        4.0,
        "standardDSv6Family",
    );
    series(
        &|n| format!("Standard_E{n}s_v5"),
        &general,
        8.0,
        "standardESv5Family",
    );
    series(
        &|n| format!("Standard_E{n}as_v5"),
        &general,
        8.0,
        "standardEASv5Family",
    );
    series(
        &|n| format!("Standard_E{n}ds_v5"),
        &general,
        8.0,
        "standardEDSv5Family",
    );
    series(
        &|n| format!("Standard_F{n}s_v2"),
        &[2, 4, 8, 16, 32, 48, 64, 72],
        2.0,
        "standardFSv2Family",
    );
    series(
        &|n| format!("Standard_HB{n}rs_v3"),
        &[120],
        448.0 / 120.0,
        "standardHBrsv3Family",
    );
    let fixed: [(&str, u64, f64, &'static str); 19] = [
        ("Standard_B2s", 2, 4.0, "standardBSFamily"),
        ("Standard_B4ms", 4, 16.0, "standardBSFamily"),
        ("Standard_NC4as_T4_v3", 4, 28.0, "standardNCASv3_T4Family"),
        ("Standard_NC8as_T4_v3", 8, 56.0, "standardNCASv3_T4Family"),
        (
            "Standard_NC16as_T4_v3",
            16,
            110.0,
            "standardNCASv3_T4Family",
        ),
        (
            "Standard_NC64as_T4_v3",
            64,
            440.0,
            "standardNCASv3_T4Family",
        ),
        ("Standard_NC6s_v3", 6, 112.0, "standardNCSv3Family"),
        ("Standard_NC12s_v3", 12, 224.0, "standardNCSv3Family"),
        ("Standard_NC24s_v3", 24, 448.0, "standardNCSv3Family"),
        (
            "Standard_NC24ads_A100_v4",
            24,
            220.0,
            "StandardNCADSA100v4Family",
        ),
        (
            "Standard_NC48ads_A100_v4",
            48,
            440.0,
            "StandardNCADSA100v4Family",
        ),
        (
            "Standard_NC96ads_A100_v4",
            96,
            880.0,
            "StandardNCADSA100v4Family",
        ),
        (
            "Standard_ND96asr_v4",
            96,
            900.0,
            "standardNDASv4_A100Family",
        ),
        ("Standard_ND40rs_v2", 40, 672.0, "standardNDSv2Family"),
        (
            "Standard_NV6ads_A10_v5",
            6,
            55.0,
            "StandardNVADSA10v5Family",
        ),
        (
            "Standard_NV12ads_A10_v5",
            12,
            110.0,
            "StandardNVADSA10v5Family",
        ),
        (
            "Standard_NV18ads_A10_v5",
            18,
            220.0,
            "StandardNVADSA10v5Family",
        ),
        (
            "Standard_NV36ads_A10_v5",
            36,
            440.0,
            "StandardNVADSA10v5Family",
        ),
        ("Standard_NV12s_v3", 12, 112.0, "standardNVSv3Family"),
    ];
    for (name, vcpus, memory_gib, family) in fixed {
        sizes.push(VmSize {
            name: name.to_owned(),
            vcpus,
            memory_gib,
            family,
        });
    }
    sizes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_is_case_insensitive_and_knows_gpu_sizes() {
        let t4 = lookup("standard_nc4as_t4_v3").unwrap();
        assert_eq!(t4.name, "Standard_NC4as_T4_v3");
        assert_eq!(t4.vcpus, 4);
        assert_eq!(t4.family, "standardNCASv3_T4Family");
        assert_eq!(lookup("Standard_D16s_v5").unwrap().vcpus, 16);
        assert!(lookup("Standard_Imaginary_v9").is_none());
    }

    #[test]
    fn names_are_unique() {
        let mut names: Vec<_> = catalog().iter().map(|s| s.name.to_lowercase()).collect();
        names.sort();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len());
    }
}
