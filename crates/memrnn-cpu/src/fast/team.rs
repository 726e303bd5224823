//! A team of rayon tasks that work through a sequence of phases in lock step, each phase
//! split into a fixed number of parts: the small-batch backward's unit split.
//!
//! Why not a spinning barrier per phase: a barrier needs every member running at once,
//! which rayon does not promise (a pool thread may be busy with another call on the same
//! backend, or the tasks may run one after another on one thread), and then it deadlocks.
//! Here no member waits for another *member*, only for *parts* someone has claimed: each
//! part of a phase is claimed by exactly one member (an atomic flag), and a member that
//! has run out of parts to claim waits until every claimed part of the phase is done.
//! A claimed part is being run by a running task, so the wait always ends; with a single
//! task it simply runs every part itself.
//!
//! Locality: member `m` first claims part `m % parts` of each phase, so when the whole
//! team is present every member runs the same part every phase (its share of the weights
//! stays in its cache); a member takes another's part only when that one is late.
//!
//! Which task runs a part never changes what the part computes, so results do not depend
//! on the thread count or on the timing.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// The shared progress of one team run: for every phase, which parts are claimed and how
/// many are done.
pub struct PhaseTeam {
    parts: usize,
    claimed: Vec<AtomicBool>,
    done: Vec<AtomicUsize>,
    next_member: AtomicUsize,
}

impl PhaseTeam {
    /// `phases` phases of `parts` parts each (`parts ≥ 1`).
    pub fn new(phases: usize, parts: usize) -> Self {
        let parts = parts.max(1);
        PhaseTeam {
            parts,
            claimed: (0..phases * parts)
                .map(|_| AtomicBool::new(false))
                .collect(),
            done: (0..phases).map(|_| AtomicUsize::new(0)).collect(),
            next_member: AtomicUsize::new(0),
        }
    }

    pub fn parts(&self) -> usize {
        self.parts
    }

    /// A member's preferred part: members are numbered in the order they join.
    pub fn join(&self) -> usize {
        self.next_member.fetch_add(1, Ordering::Relaxed) % self.parts
    }

    /// Runs the parts of `phase` this member can claim (its own `home` part first), then
    /// returns once every part of the phase is done. Everything written by any part of
    /// this phase is visible to the caller afterwards (Release on `done` by the runner,
    /// Acquire here). Phases must be entered in order by every member.
    ///
    /// `#[inline(always)]`, and it must stay so: `part` runs SIMD code that has to be
    /// inlined into the caller's `#[target_feature]` function (`simd::run_avx2`). Out of
    /// line, this function is compiled without AVX2/FMA, the intrinsics inside `part`
    /// become function calls, and the small-batch backward ran 10–16× slower.
    #[inline(always)]
    pub fn run_phase(&self, phase: usize, home: usize, mut part: impl FnMut(usize)) {
        let flags = &self.claimed[phase * self.parts..(phase + 1) * self.parts];
        let done = &self.done[phase];
        for i in 0..self.parts {
            let p = (home + i) % self.parts;
            // The load first: once the team is in step, most flags are already taken and
            // a plain read does not bounce the cache line between cores.
            if !flags[p].load(Ordering::Relaxed) && !flags[p].swap(true, Ordering::Acquire) {
                part(p);
                done.fetch_add(1, Ordering::Release);
            }
        }
        let mut spins = 0u32;
        while done.load(Ordering::Acquire) < self.parts {
            // A phase's part is short, so spin first; yield later so an oversubscribed
            // machine still runs the member that holds the missing part.
            std::hint::spin_loop();
            spins = spins.saturating_add(1);
            if spins > 20_000 {
                std::thread::yield_now();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Every member records (phase, part) for what it ran; each part of each phase must
    /// run exactly once, and no part of phase k+1 may start before all of phase k ended.
    fn check(log: &[(usize, usize)], phases: usize, parts: usize) {
        let mut counts = vec![0usize; phases * parts];
        for &(ph, p) in log {
            counts[ph * parts + p] += 1;
        }
        assert!(counts.iter().all(|&c| c == 1), "parts run {counts:?}");
        let mut seen_phase = 0;
        for &(ph, _) in log {
            assert!(ph >= seen_phase, "phase {ph} ran after phase {seen_phase}");
            seen_phase = ph;
        }
    }

    #[test]
    fn one_task_runs_every_part_without_waiting_for_absent_members() {
        // A spinning barrier for a team of 3 would hang here: only one task ever runs.
        let (phases, parts) = (5, 3);
        let team = PhaseTeam::new(phases, parts);
        let log = Mutex::new(Vec::new());
        let home = team.join();
        for ph in 0..phases {
            team.run_phase(ph, home, |p| log.lock().unwrap().push((ph, p)));
        }
        check(&log.into_inner().unwrap(), phases, parts);
    }

    #[test]
    fn late_members_find_the_work_done_and_return() {
        let (phases, parts) = (4, 2);
        let team = PhaseTeam::new(phases, parts);
        let log = Mutex::new(Vec::new());
        for _ in 0..3 {
            // Members one after another on this thread, as rayon may schedule them.
            let home = team.join();
            for ph in 0..phases {
                team.run_phase(ph, home, |p| log.lock().unwrap().push((ph, p)));
            }
        }
        check(&log.into_inner().unwrap(), phases, parts);
    }

    #[test]
    fn a_team_on_a_pool_smaller_than_the_team_completes_in_order() {
        let (phases, parts) = (200, 4);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let team = PhaseTeam::new(phases, parts);
        let log = Mutex::new(Vec::new());
        pool.install(|| {
            rayon::scope(|s| {
                for _ in 0..parts {
                    s.spawn(|_| {
                        let home = team.join();
                        for ph in 0..phases {
                            team.run_phase(ph, home, |p| log.lock().unwrap().push((ph, p)));
                        }
                    });
                }
            })
        });
        check(&log.into_inner().unwrap(), phases, parts);
    }
}
