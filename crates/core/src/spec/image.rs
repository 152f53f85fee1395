//! Images: the shape of an image reference and the OS of the marketplace images known to run one.

use super::{Os, SpecError};

/// Marketplace publishers (and offers, by prefix; empty for all of the publisher's) whose
/// images are known to run one OS only. Lower case. From the publishers Azure's marketplace
/// lists for its own and the major distributions' images; anything else (a gallery image, a
/// publisher not listed) is taken on trust.
const KNOWN_IMAGES: &[(&str, &str, Os)] = &[
    ("canonical", "", Os::Linux),
    ("redhat", "", Os::Linux),
    ("suse", "", Os::Linux),
    ("debian", "", Os::Linux),
    ("openlogic", "", Os::Linux),
    ("almalinux", "", Os::Linux),
    ("resf", "", Os::Linux),
    ("oracle", "oracle-linux", Os::Linux),
    ("microsoftcblmariner", "", Os::Linux),
    ("microsoft-dsvm", "ubuntu", Os::Linux),
    ("microsoft-azure-batch", "ubuntu", Os::Linux),
    ("microsoft-azure-batch", "centos", Os::Linux),
    ("microsoftwindowsserver", "", Os::Windows),
    ("microsoftwindowsdesktop", "", Os::Windows),
    ("microsoftvisualstudio", "", Os::Windows),
    ("microsoft-dsvm", "dsvm-win", Os::Windows),
    ("microsoft-azure-batch", "windowsserver", Os::Windows),
];

/// The OS a marketplace image is known to be, if it is in [`KNOWN_IMAGES`].
pub fn known_image_os(image: &str) -> Option<Os> {
    let mut parts = image.split(':');
    let (publisher, offer) = (parts.next()?, parts.next()?);
    let (publisher, offer) = (publisher.to_ascii_lowercase(), offer.to_ascii_lowercase());
    KNOWN_IMAGES
        .iter()
        .find(|(p, o, _)| *p == publisher && offer.starts_with(o))
        .map(|(_, _, os)| *os)
}

/// A known Linux image with `os: windows` (or the reverse) would boot, but every node would
/// fail its bootstrap and never register: refuse it now, naming the image.
pub(super) fn validate_image_os(image: &str, os: Os) -> Result<(), SpecError> {
    let name = |os: Os| match os {
        Os::Linux => "linux",
        Os::Windows => "windows",
    };
    match known_image_os(image) {
        Some(known) if known != os => Err(SpecError::new(
            "image",
            format!(
                "{image:?} is a {} image but os is {:?}: set \"os\": {:?} or choose a {} image",
                name(known),
                name(os),
                name(known),
                name(os)
            ),
        )),
        _ => Ok(()),
    }
}

/// A marketplace URN `publisher:offer:sku:version` or an image resource id.
pub(super) fn validate_image(image: &str) -> Result<(), SpecError> {
    let is_id = image
        .get(.."/subscriptions/".len())
        .is_some_and(|p| p.eq_ignore_ascii_case("/subscriptions/"))
        && image.len() > "/subscriptions/".len();
    let parts: Vec<&str> = image.split(':').collect();
    let is_urn = parts.len() == 4
        && parts
            .iter()
            .all(|p| !p.is_empty() && !p.chars().any(char::is_whitespace));
    if is_id || is_urn {
        Ok(())
    } else {
        Err(SpecError::new(
            "image",
            format!(
                "{image:?} is neither a marketplace URN (publisher:offer:sku:version) \
                 nor an image resource id (/subscriptions/...)"
            ),
        ))
    }
}
