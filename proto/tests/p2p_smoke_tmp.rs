use nodescope_proto::p2p::*;
#[test]
fn smoke() {
    for (t, p) in samples::sample_payloads() {
        let m = decode_p2p(t, &p, p.len() as u64, DecodeOptions::default());
        let j = nodescope_proto::json::to_json(&m);
        let s = j.to_string();
        println!("{t}: {}", &s[..s.len().min(1500)]);
    }
}
