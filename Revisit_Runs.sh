#!/usr/bin/env bash
# Revisit_Runs.sh: the run list of Roth et al., "Revisiting Training Strategies and Generalization
# Performance in Deep Metric Learning" (ICML 2020): 67 groups x seeds 0-4 = 335 runs, ResNet-50
# with frozen batch norm, 128-d embeddings, SPC-2 batches of 112, Adam at lr 1e-5 / decay 4e-4
# without schedule (our defaults), 150 epochs (CUB200, CARS196) or 100 (SOP). Spec
# revisiting_dml.md §10; the reference's Sample_Runs/ICML2020_RevisitDML_SampleRuns.sh.
#
#     GPUS="0 1 2 3" DATAPATH=/data bash Revisit_Runs.sh            # runs land in Training_Results/
#     bash Revisit_Runs.sh --dry-run --only '^CUB_Margin_b12_Distance_s'
#
# Group names and flags are the reference's. Changed: its stray debug line (--gpu 1, a personal
# Dropbox path, no --log_online) is dropped; its script defects are fixed (the stray space in
# "--group CUBreg_SNR_Distance _3", and the "_3" suffixes of CUBreg_Margin_b12_Distance and
# CUBreg_Triplet_Distance, so every group is named like its CARS and SOP siblings); Softmax lines
# drop "--batch_mining distance", which softmax ignores (and which is our default anyway).
#
# Switches that reproduce reference behaviours behind the published numbers (off by default):
#   --miner_distance_no_upper_cutoff, --miner_rho_distance_no_upper_cutoff: the reference never
#     applied the miners' 1.4 upper cutoff (spec §2.4, §4.2);
#   --loss_margin_reference_pair_count: its margin loss divides by the triplets with a non-zero
#     term, not the non-zero terms (the same code at the first push and at HEAD);
#   --loss_arcface_reference_bug: the paper's ArcFace numbers predate the fix 703d189 (the margin
#     was added to every logit of the row, a no-op; cosines clamped at 1e-10; spec §3.3);
#   --loss_softtriplet_reference_math: its SoftTriple normalisation and softmax axes (spec §3.3);
#   --loss_quadruplet_reference_fourth: its fourth sample, any index with another negative.
# Not needed: --data_batchmatch_reference_wasserstein (the disthist_batchmatch sampler is not in
# this list); SNR's lambda 0 with the distance miner is built in (criteria/snr.py); the reference's
# K = #training classes for k-means on the test split has no flag and changes nothing here (CUB
# and CARS train and test on equally many classes; SOP: 11,318 vs 11,316).
#
# Metrics as the paper's Result_Evaluations.py reads them (spec §11), on every split: R@1/2/4,
# NMI, F1, the paper's "mAP" (mAP_c) and MAP@R (mAP_R); on the training split it reads dists@intra,
# dists@inter, dists@intra_over_inter and rho(Phi) at -1, 1, 2, 10. rho is rho_spectrum_revisit@k:
# the reference's CPU path (the run list never passes --evaluate_on_gpu) took the D - 1 largest
# singular values, and rho_spectrum@k (all D of them) gives other numbers. Train-split metrics are
# on (no --no_train_metrics). --storage_metrics e_recall@1 (default): checkpoint_Test_e_recall@1.pth
# is the best test epoch, as the reference selected.

source "$(dirname "${BASH_SOURCE[0]}")/run_lists/common.sh"

CONSTANT=(--log_online --project RevisitDML --bs 112 --samples_per_class 2
    --evaluation_metrics e_recall@1 e_recall@2 e_recall@4 nmi f1 mAP_c mAP_R
    dists@intra dists@inter dists@intra_over_inter rho_spectrum_revisit@-1
    rho_spectrum_revisit@1 rho_spectrum_revisit@2 rho_spectrum_revisit@10)
NORMALIZED=(--arch resnet50_frozen_normalize)
UNNORMALIZED=(--arch resnet50_frozen) # Npair, GenLifted, Angular
DISTANCE=(--batch_mining distance --miner_distance_no_upper_cutoff)
# rho-regularisation: "${RHO[@]}" p, the group's probability p of a push triplet
RHO=(--batch_mining rho_distance --miner_rho_distance_no_upper_cutoff --miner_rho_distance_cp)
MARGIN=(--loss margin --loss_margin_reference_pair_count)
B06=(--loss_margin_beta 0.6)

# group GROUP [flags...]: seed $seed of GROUP, job GROUP_s$seed. The prefix gives the dataset and
# the epochs; DataLoader workers are 6 (--kernels 6) unless the group sets its own.
group() {
    local name=$1 dataset epochs
    shift
    case $name in
        CUB*) dataset=cub200 epochs=150 ;;
        CAR*) dataset=cars196 epochs=150 ;;
        SOP*) dataset=online_products epochs=100 ;;
    esac
    [[ " $* " == *" --kernels "* ]] || set -- --kernels 6 "$@"
    train "${name}_s$seed" "$dataset" --n_epochs "$epochs" "${CONSTANT[@]}" --group "$name" \
        --seed "$seed" "$@"
}

for seed in 0 1 2 3 4; do
    # CUB200-2011: 18 baselines, 5 rho-regularised ranking losses
    group CUB_Npair --loss npair --batch_mining npair "${UNNORMALIZED[@]}"
    group CUB_GenLifted --loss lifted --batch_mining lifted "${UNNORMALIZED[@]}"
    group CUB_ProxyNCA --loss proxynca "${NORMALIZED[@]}"
    group CUB_Histogram --loss histogram --loss_histogram_nbins 65 "${NORMALIZED[@]}"
    group CUB_Contrastive --loss contrastive "${DISTANCE[@]}" "${NORMALIZED[@]}"
    group CUB_SoftTriple --loss softtriplet --loss_softtriplet_reference_math "${NORMALIZED[@]}"
    group CUB_Angular --loss angular --batch_mining npair "${UNNORMALIZED[@]}"
    group CUB_ArcFace --loss arcface --loss_arcface_reference_bug "${NORMALIZED[@]}"
    group CUB_Triplet_Random --loss triplet --batch_mining random "${NORMALIZED[@]}"
    group CUB_Triplet_Semihard --loss triplet --batch_mining semihard "${NORMALIZED[@]}"
    group CUB_Triplet_Softhard --loss triplet --batch_mining softhard "${NORMALIZED[@]}"
    group CUB_Triplet_Distance --loss triplet "${DISTANCE[@]}" "${NORMALIZED[@]}"
    group CUB_Quadruplet_Distance --loss quadruplet --loss_quadruplet_reference_fourth \
        "${DISTANCE[@]}" "${NORMALIZED[@]}"
    group CUB_Margin_b06_Distance "${MARGIN[@]}" "${B06[@]}" "${DISTANCE[@]}" "${NORMALIZED[@]}"
    group CUB_Margin_b12_Distance "${MARGIN[@]}" "${DISTANCE[@]}" "${NORMALIZED[@]}"
    group CUB_SNR_Distance --loss snr "${DISTANCE[@]}" "${NORMALIZED[@]}"
    group CUB_MS --loss multisimilarity "${NORMALIZED[@]}"
    group CUB_Softmax --loss softmax "${NORMALIZED[@]}"
    group CUBreg_Contrastive --loss contrastive "${RHO[@]}" 0.4 "${NORMALIZED[@]}"
    group CUBreg_Margin_b06_Distance "${MARGIN[@]}" "${B06[@]}" "${RHO[@]}" 0.4 "${NORMALIZED[@]}"
    group CUBreg_Margin_b12_Distance "${MARGIN[@]}" "${RHO[@]}" 0.35 "${NORMALIZED[@]}"
    group CUBreg_Triplet_Distance --loss triplet "${RHO[@]}" 0.4 "${NORMALIZED[@]}"
    group CUBreg_SNR_Distance --loss snr "${RHO[@]}" 0.3 "${NORMALIZED[@]}"

    # CARS196: the same 23 groups (the reference names them CARS_* and CARreg_*)
    group CARS_Npair --loss npair --batch_mining npair "${UNNORMALIZED[@]}"
    group CARS_GenLifted --loss lifted --batch_mining lifted "${UNNORMALIZED[@]}"
    group CARS_ProxyNCA --loss proxynca "${NORMALIZED[@]}"
    group CARS_Histogram --loss histogram --loss_histogram_nbins 65 "${NORMALIZED[@]}"
    group CARS_Contrastive --loss contrastive "${DISTANCE[@]}" "${NORMALIZED[@]}"
    group CARS_SoftTriple --loss softtriplet --loss_softtriplet_reference_math "${NORMALIZED[@]}"
    group CARS_Angular --loss angular --batch_mining npair "${UNNORMALIZED[@]}"
    group CARS_ArcFace --loss arcface --loss_arcface_reference_bug "${NORMALIZED[@]}"
    group CARS_Triplet_Random --loss triplet --batch_mining random "${NORMALIZED[@]}"
    group CARS_Triplet_Semihard --loss triplet --batch_mining semihard "${NORMALIZED[@]}"
    group CARS_Triplet_Softhard --loss triplet --batch_mining softhard "${NORMALIZED[@]}"
    group CARS_Triplet_Distance --loss triplet "${DISTANCE[@]}" "${NORMALIZED[@]}"
    group CARS_Quadruplet_Distance --loss quadruplet --loss_quadruplet_reference_fourth \
        "${DISTANCE[@]}" "${NORMALIZED[@]}"
    group CARS_Margin_b06_Distance "${MARGIN[@]}" "${B06[@]}" "${DISTANCE[@]}" "${NORMALIZED[@]}"
    group CARS_Margin_b12_Distance "${MARGIN[@]}" "${DISTANCE[@]}" "${NORMALIZED[@]}"
    group CARS_SNR_Distance --loss snr "${DISTANCE[@]}" "${NORMALIZED[@]}"
    group CARS_MS --loss multisimilarity "${NORMALIZED[@]}"
    group CARS_Softmax --loss softmax "${NORMALIZED[@]}"
    group CARreg_Contrastive --loss contrastive "${RHO[@]}" 0.35 "${NORMALIZED[@]}"
    group CARreg_Margin_b06_Distance "${MARGIN[@]}" "${B06[@]}" "${RHO[@]}" 0.35 "${NORMALIZED[@]}"
    group CARreg_Margin_b12_Distance "${MARGIN[@]}" "${RHO[@]}" 0.35 "${NORMALIZED[@]}"
    group CARreg_Triplet_Distance --loss triplet "${RHO[@]}" 0.35 "${NORMALIZED[@]}"
    group CARreg_SNR_Distance --loss snr "${RHO[@]}" 0.35 "${NORMALIZED[@]}"

    # Stanford Online Products: 16 baselines (no ProxyNCA, no SoftTriple: 11,318 classes), 5 reg.
    group SOP_Npair --loss npair --batch_mining npair "${UNNORMALIZED[@]}"
    group SOP_GenLifted --loss lifted --batch_mining lifted "${UNNORMALIZED[@]}"
    group SOP_Histogram --loss histogram --loss_histogram_nbins 11 "${NORMALIZED[@]}"
    group SOP_Contrastive --loss contrastive "${DISTANCE[@]}" "${NORMALIZED[@]}"
    group SOP_Angular --loss angular --batch_mining npair "${UNNORMALIZED[@]}"
    group SOP_ArcFace --loss arcface --loss_arcface_reference_bug "${NORMALIZED[@]}"
    group SOP_Triplet_Random --loss triplet --batch_mining random "${NORMALIZED[@]}"
    group SOP_Triplet_Semihard --loss triplet --batch_mining semihard "${NORMALIZED[@]}"
    group SOP_Triplet_Softhard --loss triplet --batch_mining softhard "${NORMALIZED[@]}"
    group SOP_Triplet_Distance --loss triplet "${DISTANCE[@]}" "${NORMALIZED[@]}"
    group SOP_Quadruplet_Distance --loss quadruplet --loss_quadruplet_reference_fourth \
        "${DISTANCE[@]}" "${NORMALIZED[@]}"
    group SOP_Margin_b06_Distance "${MARGIN[@]}" "${B06[@]}" "${DISTANCE[@]}" "${NORMALIZED[@]}"
    group SOP_Margin_b12_Distance --kernels 2 "${MARGIN[@]}" "${DISTANCE[@]}" "${NORMALIZED[@]}"
    group SOP_SNR_Distance --kernels 2 --loss snr "${DISTANCE[@]}" "${NORMALIZED[@]}"
    group SOP_MS --kernels 2 --loss multisimilarity "${NORMALIZED[@]}"
    group SOP_Softmax --kernels 2 --loss softmax --loss_softmax_lr 0.002 "${NORMALIZED[@]}"
    group SOPreg_Contrastive --loss contrastive "${RHO[@]}" 0.15 "${NORMALIZED[@]}"
    group SOPreg_Margin_b06_Distance "${MARGIN[@]}" "${B06[@]}" "${RHO[@]}" 0.15 "${NORMALIZED[@]}"
    group SOPreg_Margin_b12_Distance "${MARGIN[@]}" "${RHO[@]}" 0.15 "${NORMALIZED[@]}"
    group SOPreg_Triplet_Distance --loss triplet "${RHO[@]}" 0.15 "${NORMALIZED[@]}"
    group SOPreg_SNR_Distance --loss snr "${RHO[@]}" 0.15 "${NORMALIZED[@]}"
done

run_jobs "$@"
