//! Which persons a run addresses: the pre-formatted distinct_ids of the
//! population, and how each request picks one (uniform or Zipf).

use clap::{Args, ValueEnum};

/// How distinct_ids are drawn from the population.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Distribution {
    /// Every id equally likely.
    Uniform,
    /// Id of rank k with probability proportional to 1/k^s.
    Zipf,
}

/// Which persons requests address.
#[derive(Clone, Args)]
pub(crate) struct PopulationArgs {
    /// Number of persons: ids are `<prefix>0` .. `<prefix>(N-1)`.
    #[arg(long, default_value_t = 10_000)]
    pub(crate) population: usize,

    /// Prefix of distinct_ids.
    #[arg(long, default_value = "u")]
    pub(crate) prefix: String,

    /// How ids are drawn.
    #[arg(long, value_enum, default_value = "uniform")]
    pub(crate) distribution: Distribution,

    /// Exponent s of the Zipf distribution.
    #[arg(long, default_value_t = 1.0)]
    pub(crate) zipf_exponent: f64,
}

/// splitmix64: tiny, fast, and good enough to pick ids.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (Lemire's multiply-shift; the bias is negligible here).
    fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The population's distinct_ids, pre-formatted, and how to draw them.
pub(crate) struct Ids {
    pub(crate) names: Vec<String>,
    /// Zipf's cumulative distribution over ranks; `None` for uniform.
    cdf: Option<Vec<f64>>,
}

impl Ids {
    pub(crate) fn new(p: &PopulationArgs) -> Result<Self, String> {
        if p.population == 0 {
            return Err("--population must be at least 1".into());
        }
        let names = (0..p.population)
            .map(|i| format!("{}{i}", p.prefix))
            .collect();
        let cdf = match p.distribution {
            Distribution::Uniform => None,
            Distribution::Zipf => {
                let mut acc = 0.0;
                let mut cdf: Vec<f64> = (1..=p.population)
                    .map(|k| {
                        acc += (k as f64).powf(-p.zipf_exponent);
                        acc
                    })
                    .collect();
                for c in &mut cdf {
                    *c /= acc;
                }
                Some(cdf)
            }
        };
        Ok(Ids { names, cdf })
    }

    pub(crate) fn pick(&self, rng: &mut Rng) -> usize {
        match &self.cdf {
            None => rng.below(self.names.len()),
            Some(cdf) => {
                let u = rng.unit();
                cdf.partition_point(|&c| c < u).min(cdf.len() - 1)
            }
        }
    }
}

pub(crate) fn distribution_name(p: &PopulationArgs) -> String {
    match p.distribution {
        Distribution::Uniform => "uniform".into(),
        Distribution::Zipf => format!("zipf(s={})", p.zipf_exponent),
    }
}

pub(crate) fn clock_seed(seed: u64) -> u64 {
    if seed != 0 {
        return seed;
    }
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0x5EED)
}
