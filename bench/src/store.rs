//! Vector sets (VADD, VSIM latency and recall) and the ClickHouse sink's throughput.

use super::*;
use sightline_settings::{Config, Quantization};
use sightline_store::{Query, VectorAttrs, VectorItem, VectorStore};

/// Unit vectors clustered around `centroids` random directions, as embeddings of real content are.
fn clustered_vectors(n: usize, dim: usize, centroids: usize, rng: &mut fastrand::Rng) -> Vec<Vec<f32>> {
    let gauss = |rng: &mut fastrand::Rng| {
        let (u, v) = (rng.f32().max(1e-9), rng.f32());
        (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
    };
    let unit = |mut v: Vec<f32>| {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter_mut().for_each(|x| *x /= n);
        v
    };
    let cs: Vec<Vec<f32>> = (0..centroids).map(|_| unit((0..dim).map(|_| gauss(rng)).collect())).collect();
    (0..n)
        .map(|_| {
            let c = &cs[rng.usize(..centroids)];
            unit(c.iter().map(|x| x + 0.06 * gauss(rng)).collect())
        })
        .collect()
}

pub(crate) async fn store_bench(
    report: &Path,
    n: usize,
    queries: usize,
    events: usize,
    config: Option<&Path>,
) -> Result<()> {
    let (mut cfg, tag) = isolated_config(config)?;
    cfg.nats.events_max_bytes = 256 << 20;
    cfg.nats.work_max_bytes = 16 << 20;
    let dim = 384;
    let mut rng = fastrand::Rng::with_seed(7);
    eprintln!("store bench: generating {n} + {queries} vectors of {dim} dimensions");
    let data = clustered_vectors(n + queries, dim, 2000, &mut rng);
    let (base, probes) = data.split_at(n);
    vector_sets(report, &cfg, &tag, base, probes).await?;
    clickhouse_sink(report, &cfg, events).await
}

/// VADD throughput, VSIM latency (plain and filtered) and recall@10 against brute force, per
/// quantisation.
async fn vector_sets(
    report: &Path,
    cfg: &Config,
    tag: &str,
    base: &[Vec<f32>],
    probes: &[Vec<f32>],
) -> Result<()> {
    let (n, queries, dim) = (base.len(), probes.len(), base.first().map_or(0, Vec::len));
    let vs = VectorStore::connect(&cfg.redis.url).await?;
    let mut text = String::new();
    for quant in [Quantization::Q8, Quantization::Noquant] {
        let quant_name = quant.as_str();
        let set = format!("{tag}:bench:{quant_name}");
        let add_rate = fill(&vs, &set, base, quant).await?;
        let (mut lat, mut lat_f, mut recall) = (Vec::new(), Vec::new(), 0usize);
        for (qi, q) in probes.iter().enumerate() {
            let t = Instant::now();
            let hits = vs.similar(&set, Query::Vector(q), 10, None).await?;
            lat.push(t.elapsed().as_secs_f64() * 1000.0);
            let t = Instant::now();
            vs.similar(&set, Query::Vector(q), 10, Some(".stream == \"s3\"")).await?;
            lat_f.push(t.elapsed().as_secs_f64() * 1000.0);
            // Brute force: exact top 10 by dot product (vectors are unit length).
            let mut scored: Vec<(f32, usize)> = base
                .iter()
                .enumerate()
                .map(|(i, v)| (v.iter().zip(q).map(|(a, b)| a * b).sum(), i))
                .collect();
            scored.select_nth_unstable_by(10, |a, b| b.0.total_cmp(&a.0));
            let truth: std::collections::HashSet<String> =
                scored[..10].iter().map(|(_, i)| format!("e{i}")).collect();
            recall += hits.iter().filter(|h| truth.contains(&h.id)).count();
            if qi % 100 == 0 {
                eprintln!("  {quant_name}: query {qi} / {queries}");
            }
        }
        lat.sort_by(f64::total_cmp);
        lat_f.sort_by(f64::total_cmp);
        text += &format!(
            "| {quant_name} | {n} | {add_rate:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.3} |\n",
            percentile(&lat, 0.5),
            percentile(&lat, 0.99),
            percentile(&lat_f, 0.5),
            percentile(&lat_f, 0.99),
            recall as f64 / (queries * 10) as f64
        );
        vs.drop_set(&set).await?;
    }
    vs.compact_log().await?;
    let vec_table = format!(
        "## Vector sets ({n} × {dim}-d clustered unit vectors, {queries} queries, k = 10; {})\n\n\
         | quantisation | vectors | VADD/s (pipelined 500) | VSIM p50 ms | VSIM p99 ms | filtered p50 ms | filtered p99 ms | recall@10 vs brute force |\n\
         |---|---|---|---|---|---|---|---|\n{text}\n",
        now_utc()
    );
    println!("{vec_table}");
    append(report, &vec_table)?;

    Ok(())
}

/// The ClickHouse sink's rows/s: events already in JetStream, drained by a sink-only node.
async fn clickhouse_sink(report: &Path, cfg: &Config, events: usize) -> Result<()> {
    let bus = sightline_actors::Bus::connect(&cfg.nats).await?;
    bus.ensure().await?;
    eprintln!("store bench: publishing {events} events");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64;
    for i in 0..events as i64 {
        let mut e = sightline_wire::Event::new(
            sightline_wire::EventKind::Scene,
            &format!("s{}", i % 20),
            i * 40,
            now + i,
            "bench@1",
        );
        e.score = 0.5;
        bus.publish(bus.names.event_subject(e.kind, &e.stream_id), &e.id, serde_json::to_vec(&e)?).await?;
    }
    let roles = sightline_actors::Roles::parse("sink")?;
    let started = Instant::now();
    let node = sightline_actors::Node::start(cfg, roles, sightline_actors::Metrics::new()).await?;
    let store = node.store.clone();
    loop {
        let c: u64 = store.client().query("SELECT count() FROM events").fetch_one().await.unwrap_or(0);
        if c >= events as u64 {
            break;
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!("the sink stored {c} of {events} events in 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    let sink_text = format!(
        "## ClickHouse sink ({events} events from JetStream into ClickHouse, batch_max {}, {})\n\n\
         {:.0} rows/s ({secs:.1} s, including node start and migrations), one INSERT per batch, acked after it.\n\n",
        cfg.sink.batch_max,
        now_utc(),
        events as f64 / secs
    );
    println!("{sink_text}");
    node.shutdown().await;
    bus.destroy().await;
    let _ = store
        .client()
        .query(&format!("DROP DATABASE IF EXISTS `{}`", cfg.clickhouse.database))
        .execute()
        .await;
    append(report, &sink_text)
}

/// Adds `base` to `set` in pipelined chunks of 500; VADDs per second.
async fn fill(vs: &VectorStore, set: &str, base: &[Vec<f32>], quant: Quantization) -> Result<f64> {
    let (n, quant_name) = (base.len(), quant.as_str());
    let started = Instant::now();
    for (i, chunk) in base.chunks(500).enumerate() {
        let items: Vec<VectorItem> = chunk
            .iter()
            .enumerate()
            .map(|(j, v)| VectorItem {
                id: format!("e{}", i * 500 + j),
                vector: v.clone(),
                attrs: VectorAttrs {
                    stream: format!("s{}", (i * 500 + j) % 10),
                    kind: "transcript".into(),
                    pts_ms: (i * 500 + j) as i64,
                    wall_ms: 0,
                    text: String::new(),
                    keyframe: false,
                },
            })
            .collect();
        vs.add(set, &items, quant).await?;
        if i % 40 == 0 {
            eprintln!("  {quant_name}: {} / {n} added", (i + 1) * 500);
        }
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}
