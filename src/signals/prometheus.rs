//! Just enough of the Prometheus text format to read an engine's gauges: `name{labels} value`
//! lines, summed over label sets (vLLM labels per engine; a server's load is the sum).

use std::collections::HashMap;

/// Metric name -> value summed over its label sets. Comments and malformed lines are skipped.
pub fn parse(text: &str) -> HashMap<String, f64> {
    let mut out: HashMap<String, f64> = HashMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, rest) = match line.find(['{', ' ']) {
            Some(i) => (&line[..i], &line[i..]),
            None => continue,
        };
        let rest = match rest.strip_prefix('{') {
            Some(r) => match r.rfind('}') {
                Some(end) => &r[end + 1..],
                None => continue,
            },
            None => rest,
        };
        let Some(value) = rest.split_whitespace().next().and_then(|v| v.parse::<f64>().ok()) else {
            continue;
        };
        if value.is_finite() {
            *out.entry(name.to_string()).or_default() += value;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_label_sets_and_skips_comments() {
        let m = parse(
            "# HELP vllm:num_requests_waiting x\n# TYPE vllm:num_requests_waiting gauge\n\
             vllm:num_requests_waiting{engine=\"0\",model_name=\"q\"} 3.0\n\
             vllm:num_requests_waiting{engine=\"1\",model_name=\"q\"} 2.0\n\
             vllm:kv_cache_usage_perc{model_name=\"a,b}\"} 0.5\n\
             llamacpp:requests_deferred 4\nbroken line\n",
        );
        assert_eq!(m["vllm:num_requests_waiting"], 5.0);
        assert_eq!(m["vllm:kv_cache_usage_perc"], 0.5);
        assert_eq!(m["llamacpp:requests_deferred"], 4.0);
        assert!(!m.contains_key("broken"));
    }
}
