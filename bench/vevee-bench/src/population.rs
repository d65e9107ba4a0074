//! Which persons a run addresses: the pre-formatted distinct_ids of the
//! population, and how each request picks one (uniform or Zipf).

use clap::{Args, ValueEnum};
use rand::{RngExt, SeedableRng, rngs::SmallRng};
use rand_distr::Zipf;

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

/// The id picker of one worker.
pub(crate) type IdRng = SmallRng;

/// Worker `worker`'s picker for a run seeded with `seed` (see [`clock_seed`]):
/// the same seed gives every worker the same sequence of ids, run after run
/// (of one build: `Cargo.lock` pins `rand`), and each worker its own.
pub(crate) fn worker_rng(seed: u64, worker: usize) -> IdRng {
    IdRng::seed_from_u64(seed ^ (worker as u64).wrapping_mul(0xA076_1D64_78BD_642F))
}

/// The population's distinct_ids, pre-formatted, and how to draw them.
pub(crate) struct Ids {
    pub(crate) names: Vec<String>,
    /// Zipf over the ranks `1..=population` (rank k is index k - 1);
    /// `None` for uniform.
    zipf: Option<Zipf<f64>>,
}

impl Ids {
    pub(crate) fn new(p: &PopulationArgs) -> Result<Self, String> {
        if p.population == 0 {
            return Err("--population must be at least 1".into());
        }
        let names = (0..p.population)
            .map(|i| format!("{}{i}", p.prefix))
            .collect();
        let zipf = match p.distribution {
            Distribution::Uniform => None,
            Distribution::Zipf => Some(
                Zipf::new(p.population as f64, p.zipf_exponent)
                    .map_err(|e| format!("--zipf-exponent {}: {e}", p.zipf_exponent))?,
            ),
        };
        Ok(Ids { names, zipf })
    }

    /// The index in `names` of the next person to address.
    pub(crate) fn pick(&self, rng: &mut IdRng) -> usize {
        let n = self.names.len();
        match &self.zipf {
            None => rng.random_range(0..n),
            // A rank in 1..=n, as a float; the clamp guards the cast.
            Some(zipf) => (rng.sample(zipf) as usize).clamp(1, n) - 1,
        }
    }
}

pub(crate) fn distribution_name(p: &PopulationArgs) -> String {
    match p.distribution {
        Distribution::Uniform => "uniform".into(),
        Distribution::Zipf => format!("zipf(s={})", p.zipf_exponent),
    }
}

/// `seed`, or one from the clock when it is 0.
pub(crate) fn clock_seed(seed: u64) -> u64 {
    if seed != 0 {
        return seed;
    }
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0x5EED)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(population: usize, distribution: Distribution, s: f64) -> Ids {
        Ids::new(&PopulationArgs {
            population,
            prefix: "u".into(),
            distribution,
            zipf_exponent: s,
        })
        .unwrap()
    }

    /// How often each index comes up in `draws` picks.
    fn frequencies(ids: &Ids, draws: usize) -> Vec<f64> {
        let mut rng = worker_rng(42, 0);
        let mut counts = vec![0usize; ids.names.len()];
        for _ in 0..draws {
            counts[ids.pick(&mut rng)] += 1;
        }
        counts
            .into_iter()
            .map(|c| c as f64 / draws as f64)
            .collect()
    }

    #[test]
    fn ids_are_the_prefix_and_the_index() {
        let ids = ids(3, Distribution::Uniform, 1.0);
        assert_eq!(ids.names, ["u0", "u1", "u2"]);
    }

    #[test]
    fn a_seed_gives_each_worker_its_own_repeatable_sequence() {
        let ids = ids(1_000_000, Distribution::Uniform, 1.0);
        let draw = |seed, worker| {
            let mut rng = worker_rng(seed, worker);
            (0..20).map(|_| ids.pick(&mut rng)).collect::<Vec<_>>()
        };
        assert_eq!(draw(7, 3), draw(7, 3));
        assert_ne!(draw(7, 3), draw(7, 4));
        assert_ne!(draw(7, 3), draw(8, 3));
    }

    #[test]
    fn uniform_covers_the_population_evenly() {
        for f in frequencies(&ids(10, Distribution::Uniform, 1.0), 200_000) {
            assert!((f - 0.1).abs() < 0.005, "{f}");
        }
    }

    #[test]
    fn zipf_gives_rank_k_a_weight_of_one_over_k_to_the_s() {
        for s in [1.0, 0.5, 2.0] {
            let n = 10;
            let weights: Vec<f64> = (1..=n).map(|k| (k as f64).powf(-s)).collect();
            let total: f64 = weights.iter().sum();
            let got = frequencies(&ids(n, Distribution::Zipf, s), 400_000);
            for (k, (f, w)) in got.iter().zip(&weights).enumerate() {
                let want = w / total;
                assert!((f - want).abs() < 0.005, "s={s} index {k}: {f} vs {want}");
            }
        }
    }

    #[test]
    fn zipf_stays_in_the_population() {
        let ids = ids(3, Distribution::Zipf, 0.0);
        let mut rng = worker_rng(1, 0);
        assert!((0..10_000).all(|_| ids.pick(&mut rng) < 3));
    }

    #[test]
    fn a_negative_exponent_is_refused() {
        let err = Ids::new(&PopulationArgs {
            population: 10,
            prefix: "u".into(),
            distribution: Distribution::Zipf,
            zipf_exponent: -1.0,
        })
        .err()
        .unwrap();
        assert!(err.starts_with("--zipf-exponent -1:"), "{err}");
    }
}
