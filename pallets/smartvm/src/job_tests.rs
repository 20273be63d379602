//! Jobs: LeNet-5 run as a job over several blocks ends with `infer`'s output, each block within
//! the configured share of weight and of proof (measured as a real storage proof); jobs share
//! blocks fairly; every way a job can fail ends it with its typed error and settles its fee.

use codec::Encode;
use polkadot_sdk::frame_support::{
    assert_noop, assert_ok,
    traits::{fungible::InspectHold, Hooks},
    weights::Weight,
};

use crate::mock::*;
use crate::tests::{
    bounded, deploy, lenet, root, same_events_and_root_on_both_kernel_paths, LeNet, LIMIT,
};
use crate::{Error, Event, HoldReason, JobError, JobQueue, JobStatus, Jobs};

/// A weight limit ample for LeNet-5 as a job.
const JOB_LIMIT: Weight = Weight::from_parts(5_000_000_000_000, 16 << 20);

/// A share of `ref_time` for a slice's overhead (at the largest state) and 0.2 ms of VM work
/// (LeNet-5 needs about 0.6 ms here), and of proof for the overhead and `weight_bytes` more: its
/// largest weight block (fc1, 48 KB) must fit. LeNet-5 then takes several blocks.
fn share_for(l: &LeNet, weight_bytes: u64) -> Weight {
    let overhead = crate::jobs::step_overhead::<Test>(l.program.len() as u32, 64 << 10);
    Weight::from_parts(
        overhead.ref_time() + 200_000_000,
        overhead.proof_size() + weight_bytes,
    )
}

#[test]
fn a_share_too_small_for_the_largest_state_and_program_is_refused() {
    JobShare::set(Weight::from_parts(1_000_000_000_000, 4 << 20));
    assert_eq!(crate::limits::check_jobs::<Test>(), Ok(()));
    JobShare::set(Weight::from_parts(1_000_000_000, 8 << 10));
    assert_eq!(
        crate::limits::check_jobs::<Test>(),
        Err(crate::limits::JobShareError::NoRoomForWork)
    );
    JobShare::set(Weight::from_parts(1_000_000_000_000, 6 << 20));
    assert!(matches!(
        crate::limits::check_jobs::<Test>(),
        Err(crate::limits::JobShareError::ProofTooLarge { .. })
    ));
}

fn held(who: u64) -> u64 {
    Balances::balance_on_hold(&HoldReason::JobPrepayment.into(), &who)
}

fn deposit(who: u64) -> u64 {
    Balances::balance_on_hold(&HoldReason::JobResult.into(), &who)
}

/// Runs the jobs' hook of the next block; returns the weight it reported.
fn next_block() -> Weight {
    let n = System::block_number() + 1;
    System::set_block_number(n);
    SmartVm::on_initialize(n)
}

/// The terminal event of `job`, if it has ended.
fn ended(job: u64) -> Option<Event<Test>> {
    System::events().into_iter().find_map(|r| match r.event {
        RuntimeEvent::SmartVm(e @ Event::JobCompleted { job: j, .. })
        | RuntimeEvent::SmartVm(e @ Event::JobFailed { job: j, .. })
            if j == job =>
        {
            Some(e)
        }
        _ => None,
    })
}

/// Runs blocks until `job` ends (at most `blocks`), checking each block's weight against the
/// share; returns the blocks it took.
fn run_until_ended(job: u64, blocks: u32) -> u32 {
    for n in 1..=blocks {
        let used = next_block();
        assert!(
            used.all_lte(JobShare::get()),
            "block used {used:?}, share {:?}",
            JobShare::get()
        );
        if ended(job).is_some() {
            return n;
        }
    }
    panic!("job {job} did not end in {blocks} blocks");
}

fn submit(who: u64, model: u32, input: &[u8], limit: Weight) -> u64 {
    let id = crate::NextJobId::<Test>::get();
    assert_ok!(SmartVm::submit_job(
        RuntimeOrigin::signed(who),
        model,
        bounded(input),
        limit
    ));
    id
}

#[test]
fn lenet5_as_a_job_spans_blocks_and_ends_with_the_offchain_logits() {
    let l = lenet();
    JobShare::set(share_for(&l, 56 << 10));
    new_test_ext().execute_with(|| {
        let model = deploy(&l);
        let free_before = Balances::free_balance(2);
        let issuance = Balances::total_issuance();
        let job = submit(2, model, &l.inputs[0], JOB_LIMIT);
        let prepaid = Jobs::<Test>::get(job).unwrap().prepaid;
        assert_eq!(held(2), prepaid);
        assert!(prepaid > 0);
        let blocks = run_until_ended(job, 50);
        let Some(Event::JobCompleted {
            output,
            class,
            slices,
            weight_used,
            fee,
            ..
        }) = ended(job)
        else {
            panic!("expected completion, got {:?}", ended(job));
        };
        assert_eq!(output.to_vec(), l.logits[0]);
        assert!(slices >= 3, "LeNet-5 took {slices} slices");
        assert_eq!(slices, blocks);
        // The fee of the weight used is burnt, the rest of the hold released.
        assert_eq!(
            fee,
            <JobFee as polkadot_sdk::frame_support::weights::WeightToFee>::weight_to_fee(
                &weight_used
            )
        );
        assert_eq!(held(2), 0);
        // The record's deposit stays held while the result is kept.
        let record = Jobs::<Test>::get(job).unwrap();
        assert!(record.deposit > 0);
        assert_eq!(deposit(2), record.deposit);
        assert_eq!(
            Balances::free_balance(2),
            free_before - fee - record.deposit
        );
        assert_eq!(Balances::total_issuance(), issuance - fee);
        // The result stays queryable; the queue is empty; the state is gone.
        assert_eq!(record.status, JobStatus::Done { output, class });
        assert!(JobQueue::<Test>::get().is_empty());
        assert!(crate::JobStates::<Test>::get(job).is_none());
        // The same output as a one-block `infer`.
        assert_ok!(SmartVm::infer(
            RuntimeOrigin::signed(2),
            model,
            bounded(&l.inputs[0]),
            LIMIT
        ));
        assert_ok!(SmartVm::do_try_state());
    });
}

/// Each block's storage proof, recorded as a collator records it, stays within the share's
/// proof size (the hook's reads: queue, job, model, program, state, weight blocks).
#[test]
fn every_block_of_a_job_stays_within_its_proof_share() {
    let l = lenet();
    let share = share_for(&l, 56 << 10);
    JobShare::set(share);
    let mut ext = new_test_ext();
    let (model, job) = ext.execute_with(|| {
        let model = deploy(&l);
        (model, submit(2, model, &l.inputs[1], JOB_LIMIT))
    });
    let _ = model;
    ext.commit_all().unwrap();
    let mut sizes = Vec::new();
    loop {
        let (done, proof) = ext.execute_and_prove(|| {
            next_block();
            ended(job).is_some()
        });
        ext.commit_all().unwrap();
        sizes.push(proof.encoded_size() as u64);
        if done {
            break;
        }
        assert!(sizes.len() < 50);
    }
    println!("proof per block: {sizes:?} (share {})", share.proof_size());
    assert!(sizes.len() >= 3);
    for size in &sizes {
        assert!(
            *size <= share.proof_size(),
            "{size} > {}",
            share.proof_size()
        );
    }
}

#[test]
fn host_and_in_runtime_kernels_give_the_same_storage_root_for_a_job() {
    let l = lenet();
    JobShare::set(share_for(&l, 56 << 10));
    same_events_and_root_on_both_kernel_paths(|| {
        let model = deploy(&l);
        let job = submit(2, model, &l.inputs[2], JOB_LIMIT);
        run_until_ended(job, 50);
        assert!(matches!(ended(job), Some(Event::JobCompleted { .. })));
    });
}

#[test]
fn several_jobs_progress_fairly() {
    let l = lenet();
    JobShare::set(share_for(&l, 56 << 10));
    new_test_ext().execute_with(|| {
        let model = deploy(&l);
        let jobs: Vec<u64> = (0..3)
            .map(|i| submit(1 + i % 2, model, &l.inputs[i as usize], JOB_LIMIT))
            .collect();
        // Every job advances within any three consecutive blocks.
        let mut last_seen = [0u32; 3];
        for block in 1..=60u32 {
            System::reset_events();
            next_block();
            for r in System::events() {
                if let RuntimeEvent::SmartVm(
                    Event::JobAdvanced { job, .. } | Event::JobCompleted { job, .. },
                ) = r.event
                {
                    last_seen[job as usize] = block;
                }
            }
            for (i, job) in jobs.iter().enumerate() {
                let running = Jobs::<Test>::get(job).unwrap().status == JobStatus::Running;
                assert!(
                    !running || block - last_seen[i] < 3,
                    "job {job} starved at block {block}: {last_seen:?} {:?}",
                    System::events()
                );
            }
            if JobQueue::<Test>::get().is_empty() {
                break;
            }
        }
        for (i, job) in jobs.iter().enumerate() {
            let JobStatus::Done { output, .. } = Jobs::<Test>::get(job).unwrap().status else {
                panic!("job {job} did not complete");
            };
            assert_eq!(output.to_vec(), l.logits[i]);
        }
    });
}

/// Runs `job` to its end and returns its error, checking the hold is gone and the fee burnt is
/// at most what was prepaid.
fn failure(job: u64, owner: u64) -> JobError {
    run_until_ended(job, 60);
    let Some(Event::JobFailed { error, fee, .. }) = ended(job) else {
        panic!("expected a failure, got {:?}", ended(job));
    };
    let record = Jobs::<Test>::get(job).unwrap();
    assert!(fee <= record.prepaid);
    assert_eq!(held(owner), 0);
    assert_eq!(record.status, JobStatus::Failed(error));
    assert!(crate::JobStates::<Test>::get(job).is_none());
    assert_ok!(SmartVm::do_try_state());
    error
}

#[test]
fn a_job_out_of_gas_fails_and_pays_its_limit() {
    let l = lenet();
    JobShare::set(share_for(&l, 56 << 10));
    new_test_ext().execute_with(|| {
        let model = deploy(&l);
        // Room for two slices' overhead, not for the whole run's compute.
        let overhead = crate::jobs::step_overhead::<Test>(l.program.len() as u32, 40_000);
        let limit = Weight::from_parts(overhead.ref_time() * 2 + 1_000_000, 16 << 20);
        let job = submit(2, model, &l.inputs[0], limit);
        assert_eq!(failure(job, 2), JobError::OutOfGas);
    });
}

#[test]
fn a_job_whose_proof_limit_runs_out_fails_with_proof_size_exhausted() {
    let l = lenet();
    JobShare::set(share_for(&l, 56 << 10));
    new_test_ext().execute_with(|| {
        let model = deploy(&l);
        let overhead = crate::jobs::step_overhead::<Test>(l.program.len() as u32, 40_000);
        let limit = Weight::from_parts(JOB_LIMIT.ref_time(), overhead.proof_size() * 2);
        let job = submit(2, model, &l.inputs[0], limit);
        assert_eq!(failure(job, 2), JobError::ProofSizeExhausted);
    });
}

#[test]
fn a_model_removed_or_updated_mid_job_ends_it() {
    let l = lenet();
    JobShare::set(share_for(&l, 56 << 10));
    new_test_ext().execute_with(|| {
        let model = deploy(&l);
        let job = submit(2, model, &l.inputs[0], JOB_LIMIT);
        next_block();
        assert_ok!(SmartVm::update_weight_block(
            RuntimeOrigin::root(),
            model,
            3,
            bounded(&l.blocks[3])
        ));
        assert_eq!(failure(job, 2), JobError::WeightsChanged);

        let job = submit(2, model, &l.inputs[0], JOB_LIMIT);
        next_block();
        assert_ok!(SmartVm::remove_model(RuntimeOrigin::signed(1), model));
        assert_eq!(failure(job, 2), JobError::ModelRemoved);
    });
}

#[test]
fn a_step_larger_than_any_block_ends_the_job_instead_of_stalling_the_queue() {
    let l = lenet();
    // Less proof than fc1's weight block (48,000 bytes) with any state: no block can read it.
    let overhead = crate::jobs::step_overhead::<Test>(l.program.len() as u32, 0);
    JobShare::set(Weight::from_parts(
        1_000_000_000_000,
        overhead.proof_size() + (40 << 10),
    ));
    new_test_ext().execute_with(|| {
        let model = deploy(&l);
        let job = submit(2, model, &l.inputs[0], JOB_LIMIT);
        assert_eq!(failure(job, 2), JobError::TooLargeForBlock);
        assert!(JobQueue::<Test>::get().is_empty());
    });
}

#[test]
fn the_owner_cancels_a_job_and_gets_back_what_it_did_not_use() {
    let l = lenet();
    JobShare::set(share_for(&l, 56 << 10));
    new_test_ext().execute_with(|| {
        let model = deploy(&l);
        let free = Balances::free_balance(2);
        let job = submit(2, model, &l.inputs[0], JOB_LIMIT);
        next_block();
        assert_noop!(
            SmartVm::cancel_job(RuntimeOrigin::signed(1), job),
            Error::<Test>::NotOwner
        );
        assert_ok!(SmartVm::cancel_job(RuntimeOrigin::signed(2), job));
        let Some(Event::JobFailed {
            error: JobError::Cancelled,
            fee,
            weight_used,
            ..
        }) = ended(job)
        else {
            panic!("expected a cancellation");
        };
        assert!(weight_used.ref_time() > 0);
        assert_eq!(held(2), 0);
        let record = Jobs::<Test>::get(job).unwrap();
        assert_eq!(Balances::free_balance(2), free - fee - record.deposit);
        assert!(JobQueue::<Test>::get().is_empty());
        assert_noop!(
            SmartVm::cancel_job(RuntimeOrigin::signed(2), job),
            Error::<Test>::JobEnded
        );
        assert_ok!(SmartVm::do_try_state());
    });
}

#[test]
fn results_stay_until_cleared_or_expired() {
    let l = lenet();
    JobShare::set(share_for(&l, 56 << 10));
    new_test_ext().execute_with(|| {
        let model = deploy(&l);
        let first = submit(2, model, &l.inputs[0], JOB_LIMIT);
        assert_noop!(
            SmartVm::clear_job(RuntimeOrigin::signed(2), first),
            Error::<Test>::JobRunning
        );
        run_until_ended(first, 50);
        assert_noop!(
            SmartVm::clear_job(RuntimeOrigin::signed(1), first),
            Error::<Test>::NotOwner
        );
        assert!(deposit(2) > 0);
        assert_ok!(SmartVm::clear_job(RuntimeOrigin::signed(2), first));
        assert!(Jobs::<Test>::get(first).is_none());
        assert_eq!(deposit(2), 0, "clearing releases the deposit");

        let second = submit(2, model, &l.inputs[1], JOB_LIMIT);
        run_until_ended(second, 50);
        let end = Jobs::<Test>::get(second).unwrap().finished.unwrap();
        while System::block_number() < end + 19 {
            next_block();
        }
        assert!(Jobs::<Test>::get(second).is_some());
        assert!(deposit(2) > 0);
        next_block();
        assert_eq!(deposit(2), 0, "expiry releases the deposit");
        assert_ok!(SmartVm::do_try_state());
        assert!(
            Jobs::<Test>::get(second).is_none(),
            "expired after JobResultTtl"
        );
    });
}

#[test]
fn bad_submissions_are_refused_and_change_nothing() {
    let l = lenet();
    new_test_ext().execute_with(|| {
        let model = deploy(&l);
        let input = bounded(&l.inputs[0]);
        let before = root();
        let submit = |who, model, input, limit| {
            SmartVm::submit_job(RuntimeOrigin::signed(who), model, input, limit)
        };
        assert_noop!(
            submit(2, 99, input.clone(), JOB_LIMIT),
            Error::<Test>::UnknownModel
        );
        assert_noop!(
            submit(2, model, bounded(&l.inputs[0][..100]), JOB_LIMIT),
            Error::<Test>::WrongInputLength
        );
        let too_much = MaxJobWeight::get().saturating_add(Weight::from_parts(1, 0));
        assert_noop!(
            submit(2, model, input.clone(), too_much),
            Error::<Test>::JobWeightLimitTooLarge
        );
        // Account 3 cannot hold the fee.
        assert!(submit(3, model, input.clone(), JOB_LIMIT).is_err());
        assert_eq!(root(), before);
        // The queue holds MaxJobs (4).
        for _ in 0..4 {
            assert_ok!(submit(2, model, input.clone(), JOB_LIMIT));
        }
        assert_noop!(
            submit(2, model, input, JOB_LIMIT),
            Error::<Test>::JobQueueFull
        );
        assert_ok!(SmartVm::do_try_state());
    });
}

#[test]
fn cost_tells_a_client_the_weight_and_bounds_a_job() {
    let l = lenet();
    JobShare::set(share_for(&l, 56 << 10));
    new_test_ext().execute_with(|| {
        let model = deploy(&l);
        let cost = SmartVm::cost(model, l.inputs[0].clone()).unwrap();
        let outcome = SmartVm::dry_run(model, l.inputs[0].clone(), LIMIT).unwrap();
        assert_eq!(cost.weight, outcome.weight_used);
        assert!(cost.fits_one_block);
        // A job given the suggested limit completes within the estimated blocks.
        let job = submit(2, model, &l.inputs[0], cost.job_weight_limit);
        let blocks = run_until_ended(job, 50);
        assert!(matches!(ended(job), Some(Event::JobCompleted { .. })));
        assert!(blocks <= cost.job_blocks, "{blocks} > {}", cost.job_blocks);
        assert_eq!(
            SmartVm::cost(99, l.inputs[0].clone()),
            Err(Error::<Test>::UnknownModel.into())
        );
    });
}
