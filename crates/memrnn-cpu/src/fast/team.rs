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

    /// Enters `phase` for a member whose preferred part is `home`: iterate the returned
    /// [`Phase`] to claim and run parts (its own `home` part first), then call
    /// [`Phase::wait`], which returns once every part of the phase is done. Everything
    /// written by any part of this phase is visible to the caller afterwards (Release on
    /// `done` by the runner, Acquire in `wait`). Phases must be entered in order by every
    /// member.
    ///
    /// Why an iterator and not a closure: the parts run SIMD code that has to be compiled
    /// inside the caller's `#[target_feature]` function (`simd::run_avx2`). A closure
    /// handed to a phase runner is a function of its own, which LLVM may leave out of
    /// line even when the runner is inlined; then it is compiled without AVX2/FMA and every
    /// intrinsic in it becomes a call (the small-batch backward ran 10–16× slower when the
    /// runner itself was out of line, and 4% slower when only the LSTM's closure was).
    /// With the loop body in the caller there is nothing to leave out of line.
    #[inline(always)]
    pub fn phase(&self, phase: usize, home: usize) -> Phase<'_> {
        Phase {
            flags: &self.claimed[phase * self.parts..(phase + 1) * self.parts],
            done: &self.done[phase],
            parts: self.parts,
            home,
            tried: 0,
            running: false,
        }
    }
}

/// One member's pass through one phase: yields the parts it claims, counts each done when
/// the next is asked for (or in `wait`), and waits for the others' parts in `wait`.
#[must_use = "call `wait` after running the claimed parts"]
pub struct Phase<'a> {
    flags: &'a [AtomicBool],
    done: &'a AtomicUsize,
    parts: usize,
    home: usize,
    tried: usize,
    /// Whether the last part yielded is still being run by this member.
    running: bool,
}

impl Phase<'_> {
    #[inline(always)]
    fn finish_running(&mut self) {
        if self.running {
            self.running = false;
            self.done.fetch_add(1, Ordering::Release);
        }
    }

    /// Counts this member's last part done, then returns once every part of the phase is.
    #[inline(always)]
    pub fn wait(mut self) {
        self.finish_running();
        let mut spins = 0u32;
        while self.done.load(Ordering::Acquire) < self.parts {
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

impl Iterator for Phase<'_> {
    type Item = usize;

    /// The next part this member claims (the previous one counts as done from here on).
    #[inline(always)]
    fn next(&mut self) -> Option<usize> {
        self.finish_running();
        while self.tried < self.parts {
            let p = (self.home + self.tried) % self.parts;
            self.tried += 1;
            // The load first: once the team is in step, most flags are already taken and
            // a plain read does not bounce the cache line between cores.
            if !self.flags[p].load(Ordering::Relaxed)
                && !self.flags[p].swap(true, Ordering::Acquire)
            {
                self.running = true;
                return Some(p);
            }
        }
        None
    }
}

impl Drop for Phase<'_> {
    /// A part abandoned by a panic still counts as done, so the other members return
    /// (with the panic on its way up through rayon) instead of spinning forever.
    fn drop(&mut self) {
        self.finish_running();
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

    fn run_logged(team: &PhaseTeam, ph: usize, home: usize, log: &Mutex<Vec<(usize, usize)>>) {
        let mut phase = team.phase(ph, home);
        for p in phase.by_ref() {
            log.lock().unwrap().push((ph, p));
        }
        phase.wait();
    }

    #[test]
    fn one_task_runs_every_part_without_waiting_for_absent_members() {
        // A spinning barrier for a team of 3 would hang here: only one task ever runs.
        let (phases, parts) = (5, 3);
        let team = PhaseTeam::new(phases, parts);
        let log = Mutex::new(Vec::new());
        let home = team.join();
        for ph in 0..phases {
            run_logged(&team, ph, home, &log);
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
                run_logged(&team, ph, home, &log);
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
                            run_logged(&team, ph, home, &log);
                        }
                    });
                }
            })
        });
        check(&log.into_inner().unwrap(), phases, parts);
    }
}
