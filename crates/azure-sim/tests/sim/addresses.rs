//! Private IP addresses: a NIC's Dynamic IP configuration gets the next free address of its
//! subnet's prefix, past the four addresses Azure reserves at the start and before the
//! broadcast address; a full subnet refuses with `SubnetIsFull`; a freed address is given
//! again; a NIC PUT again keeps its address.

use serde_json::{Value, json};

use crate::common::*;

fn ip_of(nic: &Value) -> String {
    nic["properties"]["ipConfigurations"][0]["properties"]["privateIPAddress"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn nics_get_the_next_free_address_of_their_subnet() {
    let s = spawn_sim(json!({})).await;
    s.create_network("rg").await;
    // A /29 beside the default subnet: 8 addresses, 3 usable (.4, .5, .6).
    let tiny = format!(
        "{}/providers/Microsoft.Network/virtualNetworks/vnet/subnets/tiny",
        s.rg_path("rg")
    );
    let r = s
        .put(
            &tiny,
            &json!({"properties": {"addressPrefix": "10.0.16.0/29"}}),
        )
        .await;
    assert!(matches!(r.status, 200 | 201), "{r:#?}");
    s.wait_op_ok(&r).await;

    for name in ["vm1", "vm2", "vm3"] {
        s.create_vm_ok("rg", name, &vm_body(&tiny, name, SIZE))
            .await;
    }
    let nic_ip = async |name: &str| ip_of(&s.get(&s.nic_path("rg", name)).await.body);
    assert_eq!(nic_ip("vm1-nic").await, "10.0.16.4");
    assert_eq!(nic_ip("vm2-nic").await, "10.0.16.5");
    assert_eq!(nic_ip("vm3-nic").await, "10.0.16.6");

    let full = s
        .put(&s.vm_path("rg", "vm4"), &vm_body(&tiny, "vm4", SIZE))
        .await;
    full.expect_err(400, "SubnetIsFull");
    assert!(full.message().contains("10.0.16.0/29"), "{full:#?}");

    // vm2 goes with its NIC; its address is the next one given.
    let r = s.delete(&s.vm_path("rg", "vm2")).await;
    s.wait_op_ok(&r).await;
    s.get(&s.nic_path("rg", "vm2-nic")).await.expect(404);
    s.create_vm_ok("rg", "vm4", &vm_body(&tiny, "vm4", SIZE))
        .await;
    assert_eq!(nic_ip("vm4-nic").await, "10.0.16.5");

    // The default subnet (10.0.0.0/20) numbers on its own.
    let default = s.subnet_id("rg");
    s.create_vm_ok("rg", "vm5", &vm_body(&default, "vm5", SIZE))
        .await;
    assert_eq!(nic_ip("vm5-nic").await, "10.0.0.4");

    // A standalone NIC, PUT twice: the second PUT keeps the Dynamic address.
    let nic = s.nic_path("rg", "nic-a");
    let body = json!({"location": LOCATION, "properties": {"ipConfigurations": [
        {"name": "ipconfig1", "properties": {"subnet": {"id": default}}}]}});
    let first = s.put(&nic, &body).await;
    first.expect(201);
    s.wait_op_ok(&first).await;
    assert_eq!(ip_of(&first.body), "10.0.0.5");
    let again = s.put(&nic, &body).await;
    again.expect(200);
    s.wait_op_ok(&again).await;
    assert_eq!(ip_of(&again.body), "10.0.0.5");
}
