//! Reads arbitrary bytes as a FHIR resource the way the FHIR source does:
//! JSON, then validation, then mapping to the canonical model, and for a
//! Bundle its entries, ids and references. None of it may panic.

#![no_main]

use fdp_fhir::{bundle, map, validate};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(mut resource) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let issues = validate::validate(&resource);
    let _ = map::map_resource(&resource, "fuzz-1");
    let _ = issues.len();
    if resource.get("resourceType").and_then(Value::as_str) == Some("Bundle") {
        if let Ok((_, mut entries)) = bundle::unpack(&resource) {
            let mut n = 0;
            let ids = bundle::assign_ids(&mut entries, || {
                n += 1;
                format!("new-{n}")
            });
            for e in entries.iter_mut() {
                if let Some(r) = e.resource.as_mut() {
                    let _ = bundle::resolve_references(r, &ids);
                    let _ = validate::validate(r);
                    let _ = map::map_resource(r, "fuzz-2");
                }
                let _ = e.path();
            }
        }
    }
    let _ = bundle::resolve_references(&mut resource, &Default::default());
});
