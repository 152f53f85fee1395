INSERT INTO node_addresses (node, private_ip) VALUES ('maya-00001', '10.0.0.4');
