//! The Revolut wire shapes against Revolut's published OpenAPI document
//! (the extract in `../shared/datasets/vendor-schemas/`): what we send to
//! `POST /pay` is a valid `TransactionPaymentRequest` with no field the
//! vendor does not know, what we serve as replies (the sandbox's) is a valid
//! `TransferResponse` / `Transaction`, and the vendor's own examples decode.

use std::path::Path;

use dlft_core::money::{Currency, Money};
use dlft_core::sense::bank::{BankTransaction, Payment, TxState};
use dlft_core::sense::wire::revolut::{decode_transactions, encode_payment, encode_transaction};
use dlft_core::time::Timestamp;
use serde_json::{Value, json};

fn document() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/datasets/vendor-schemas/revolut-business-payouts.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (the vendor schemas live in ../shared beside the repo)", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let name = r.strip_prefix("#/components/schemas/").expect("local refs only");
            resolve(doc, &doc["components"]["schemas"][name])
        }
        None => schema,
    }
}

/// The subset of JSON Schema the document uses for these shapes: `$ref`,
/// `type`, `required`, `properties`, `enum`, `maxLength`, `items`. With
/// `strict`, a property the schema does not declare is an error too.
fn violations(doc: &Value, schema: &Value, v: &Value, at: &str, strict: bool) -> Vec<String> {
    let s = resolve(doc, schema);
    let mut out = Vec::new();
    if let Some(allowed) = s.get("enum").and_then(Value::as_array)
        && !allowed.contains(v)
    {
        out.push(format!("{at}: {v} not in {allowed:?}"));
    }
    let ty = s.get("type").and_then(Value::as_str);
    let ok = match ty {
        Some("object") => v.is_object(),
        Some("string") => v.is_string(),
        Some("number") => v.is_number(),
        Some("integer") => v.is_i64() || v.is_u64(),
        Some("array") => v.is_array(),
        Some("boolean") => v.is_boolean(),
        _ => true,
    };
    if !ok {
        out.push(format!("{at}: {v} is not {}", ty.unwrap_or("?")));
        return out;
    }
    if let (Some(max), Some(text)) = (s.get("maxLength").and_then(Value::as_u64), v.as_str())
        && text.chars().count() as u64 > max
    {
        out.push(format!("{at}: longer than {max}"));
    }
    if let Some(obj) = v.as_object() {
        let props = s.get("properties").and_then(Value::as_object);
        for req in s.get("required").and_then(Value::as_array).into_iter().flatten() {
            let name = req.as_str().unwrap();
            if !obj.contains_key(name) {
                out.push(format!("{at}: missing required {name}"));
            }
        }
        for (k, child) in obj {
            match props.and_then(|p| p.get(k)) {
                Some(ps) => out.extend(violations(doc, ps, child, &format!("{at}.{k}"), strict)),
                None if strict => out.push(format!("{at}: unknown field {k}")),
                None => {}
            }
        }
    }
    if let (Some(items), Some(arr)) = (s.get("items"), v.as_array()) {
        for (i, child) in arr.iter().enumerate() {
            out.extend(violations(doc, items, child, &format!("{at}[{i}]"), strict));
        }
    }
    out
}

fn schema(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

#[test]
fn our_payment_request_is_the_vendors() {
    let doc = document();
    let p = Payment {
        request_id: "pay/north/inv-0042/1".into(),
        account_id: "af98333c-ea53-482b-93c2-1fa5e4eae671".into(),
        counterparty_id: "49c6a48b-6b58-40a0-b974-0b8c4888c8a7".into(),
        counterparty_account: "9116f03a-c074-4585-b261-18a706b3768b".into(),
        amount: Money::new(125_050, Currency::EUR),
        reference: "INV-0042".into(),
    };
    let body = serde_json::to_value(encode_payment(&p).unwrap()).unwrap();
    let v = violations(&doc, &schema("TransactionPaymentRequest"), &body, "pay", true);
    assert!(v.is_empty(), "{v:?}");
    // The checker itself catches a wrong shape.
    let mut bad = body.clone();
    bad["amount"] = json!("1250.50");
    bad.as_object_mut().unwrap().remove("currency");
    bad["colour"] = json!("red");
    let v = violations(&doc, &schema("TransactionPaymentRequest"), &bad, "pay", true);
    assert_eq!(v.len(), 3, "{v:?}");
}

#[test]
fn our_replies_are_the_vendors_and_its_examples_decode() {
    let doc = document();
    let t = BankTransaction {
        id: "630f9890-95e3-add1-be4a-95f126988221".into(),
        request_id: "pay/north/inv-0042/1".into(),
        state: TxState::Completed,
        amount: Money::new(116, Currency::EUR),
        counterparty_id: Some("49c6a48b-6b58-40a0-b974-0b8c4888c8a7".into()),
        created_at: Timestamp(1_725_124_880_364),
        completed_at: Some(Timestamp(1_725_124_881_000)),
        reason_code: None,
    };
    let wire = serde_json::to_value(encode_transaction(&t, "acc", "cpa")).unwrap();
    let v = violations(&doc, &schema("Transaction"), &wire, "transaction", true);
    assert!(v.is_empty(), "{v:?}");
    let reply = json!({"id": t.id, "state": "pending", "created_at": "2024-08-31T17:21:20.364171Z"});
    assert!(violations(&doc, &schema("TransferResponse"), &reply, "reply", true).is_empty());
    // Every state we model is one the vendor lists, and back.
    let states: Vec<Value> = doc["components"]["schemas"]["TransactionState"]["enum"].as_array().unwrap().clone();
    for s in &states {
        let ours: TxState = serde_json::from_value(s.clone()).expect("a vendor state we know");
        assert_eq!(&serde_json::to_value(ours).unwrap(), s);
    }
    // The vendor's own example of GET /transactions decodes.
    let example = &doc["paths"]["/transactions"]["get"]["responses"]["200"]["content"]["application/json"]["example"];
    let got = decode_transactions(example, "invoice00912345").unwrap().expect("the example's transfer");
    assert_eq!((got.state, got.amount), (TxState::Pending, Money::new(116, Currency::EUR)));
}
