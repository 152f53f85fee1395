//! Names that end up in ARM request paths: resource groups, Batch accounts and pools, virtual
//! networks, subnets, subscriptions and regions, checked against Azure's naming rules before
//! they reach a URL.
//!
//! Why here: a name like `..` is not a resource group, but it is a path segment that
//! `https://management.azure.com/subscriptions/S/resourceGroups/../providers/...` resolves
//! away, and a pool built on it could never be deleted (issue 12). Every rule cites
//! "Naming rules and restrictions for Azure resources"
//! (learn.microsoft.com/azure/azure-resource-manager/management/resource-name-rules).
//!
//! Each function returns the reason a name is refused, for the caller to put next to the
//! field or configuration key it came from.

/// `Microsoft.Resources/resourcegroups`: 1-90 characters; underscores, hyphens, periods,
/// parentheses, letters or digits (Unicode letters and digits included); can't end with a
/// period.
pub fn resource_group(name: &str) -> Result<(), String> {
    let n = name.chars().count();
    if n == 0 || n > 90 {
        return Err(format!(
            "{name:?} is not a resource group name: use 1 to 90 characters"
        ));
    }
    if !name
        .chars()
        .all(|c| c.is_alphanumeric() || "_-.()".contains(c))
    {
        return Err(format!(
            "{name:?} is not a resource group name: use letters, digits, '_', '-', '.', '(' and ')'"
        ));
    }
    if name.ends_with('.') {
        return Err(format!(
            "{name:?} is not a resource group name: it can't end with '.'"
        ));
    }
    Ok(())
}

/// `Microsoft.Batch/batchAccounts`: 3-24 characters, lowercase letters and numbers.
pub fn batch_account(name: &str) -> Result<(), String> {
    if !(3..=24).contains(&name.len())
        || !name
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    {
        return Err(format!(
            "{name:?} is not a Batch account name (3 to 24 lower-case letters and digits)"
        ));
    }
    Ok(())
}

/// `Microsoft.Batch/batchAccounts/pools`: 1-64 characters, alphanumerics, underscores and
/// hyphens.
pub fn batch_pool(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
    {
        return Err(format!(
            "{name:?} is not a Batch pool id (1 to 64 letters, digits, '-' and '_')"
        ));
    }
    Ok(())
}

/// `Microsoft.Network/virtualNetworks`: 2-64 characters; alphanumerics, underscores, periods
/// and hyphens; starts with an alphanumeric, ends with an alphanumeric or underscore.
pub fn virtual_network(name: &str) -> Result<(), String> {
    network_child(name, 2, 64, "virtual network")
}

/// `Microsoft.Network/virtualNetworks/subnets`: 1-80 characters; alphanumerics,
/// underscores, periods and hyphens; starts with an alphanumeric, ends with an alphanumeric
/// or underscore.
pub fn subnet(name: &str) -> Result<(), String> {
    network_child(name, 1, 80, "subnet")
}

fn network_child(name: &str, min: usize, max: usize, what: &str) -> Result<(), String> {
    let b = name.as_bytes();
    let ok = (min..=max).contains(&b.len())
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(c))
        && b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last()
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a {what} name ({min} to {max} letters, digits, '_', '.' and '-', \
             starting with a letter or digit and ending with one or '_')"
        ))
    }
}

/// A subscription id is a GUID (`00000000-0000-0000-0000-000000000000`).
pub fn subscription_id(id: &str) -> Result<(), String> {
    let groups: Vec<&str> = id.split('-').collect();
    let ok = groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|c| c.is_ascii_hexdigit()));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{id:?} is not a subscription id (a GUID like 00000000-0000-0000-0000-000000000000)"
        ))
    }
}

/// A region's programmatic name (`westeurope`, `eastus2`): lower-case letters and digits,
/// as `az account list-locations --query [].name` prints them.
pub fn location(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.len() > 40
        || !name
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    {
        return Err(format!(
            "{name:?} is not an Azure region name (lower-case letters and digits, like \"westeurope\")"
        ));
    }
    Ok(())
}

/// A subnet's resource id, parsed:
/// `/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Network/virtualNetworks/{vnet}/subnets/{subnet}`.
/// ARM treats the fixed segments case-insensitively; the names keep the case they were given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubnetId {
    pub subscription_id: String,
    pub resource_group: String,
    pub virtual_network: String,
    pub subnet: String,
}

impl SubnetId {
    pub fn parse(id: &str) -> Result<SubnetId, String> {
        let shape = || {
            format!(
                "{id:?} is not a subnet resource id (/subscriptions/SUB/resourceGroups/RG/providers/\
                 Microsoft.Network/virtualNetworks/VNET/subnets/NAME)"
            )
        };
        let parts: Vec<&str> = id.split('/').collect();
        let [
            "",
            subs,
            sub,
            rgs,
            rg,
            providers,
            ns,
            vnets,
            vnet,
            subnets,
            subnet_name,
        ] = parts.as_slice()
        else {
            return Err(shape());
        };
        let fixed = [
            (subs, "subscriptions"),
            (rgs, "resourceGroups"),
            (providers, "providers"),
            (ns, "Microsoft.Network"),
            (vnets, "virtualNetworks"),
            (subnets, "subnets"),
        ];
        if !fixed
            .iter()
            .all(|(got, want)| got.eq_ignore_ascii_case(want))
        {
            return Err(shape());
        }
        subscription_id(sub)?;
        resource_group(rg)?;
        virtual_network(vnet)?;
        subnet(subnet_name)?;
        Ok(SubnetId {
            subscription_id: (*sub).to_owned(),
            resource_group: (*rg).to_owned(),
            virtual_network: (*vnet).to_owned(),
            subnet: (*subnet_name).to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_groups_that_would_rewrite_a_url_are_refused() {
        for bad in [
            "",
            "..",
            ".",
            "rg.",
            "a/b",
            "a%2F..",
            "a?b",
            "a#b",
            "a b",
            &"r".repeat(91),
        ] {
            assert!(resource_group(bad).is_err(), "{bad:?} was accepted");
        }
        for good in ["render-burst", "Studio_RG", "rg.(prod)", "Ünïcode-rg", "r"] {
            assert!(resource_group(good).is_ok(), "{good:?} was refused");
        }
    }

    #[test]
    fn network_names_follow_arm() {
        assert!(virtual_network("v").is_err());
        assert!(virtual_network("studio-vnet").is_ok());
        assert!(virtual_network("-vnet").is_err());
        assert!(virtual_network("vnet.").is_err());
        assert!(subnet("render_").is_ok());
        assert!(subnet("..").is_err());
    }

    #[test]
    fn subnet_ids_parse_case_insensitively_and_refuse_traversal() {
        let id = "/subscriptions/11111111-2222-3333-4444-555555555555/resourcegroups/net-rg/\
                  providers/microsoft.network/virtualNetworks/studio/subnets/render";
        let s = SubnetId::parse(id).unwrap();
        assert_eq!(s.resource_group, "net-rg");
        assert_eq!(s.virtual_network, "studio");
        assert_eq!(s.subnet, "render");
        let bad = id.replace("net-rg", "..");
        assert!(SubnetId::parse(&bad).is_err());
        assert!(SubnetId::parse("/subscriptions/x/subnets/y").is_err());
        assert!(SubnetId::parse(&format!("{id}/extra")).is_err());
    }

    #[test]
    fn subscriptions_and_locations() {
        assert!(subscription_id("11111111-2222-3333-4444-555555555555").is_ok());
        assert!(subscription_id("../..").is_err());
        assert!(location("westeurope").is_ok());
        assert!(location("West Europe").is_err());
    }
}
