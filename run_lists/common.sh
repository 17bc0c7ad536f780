# run_lists/common.sh: the shared runner of the run lists (Revisit_Runs.sh, Robustness_Runs.sh).
#
# A run list sources this file, declares its jobs, and hands its options to run_jobs:
#
#     source "$(dirname "${BASH_SOURCE[0]}")/run_lists/common.sh"
#     train NAME DATASET [main.py flags...]
#     train_and_swipe NAME DATASET PROFILE [main.py flags...]   # then eval.py --swipe PROFILE
#     run_jobs "$@"
#
# Usage:   [GPUS="0 1 2 3"] [DATAPATH=DIR] [SAVEPATH=DIR] [PYTHON=CMD] bash LIST.sh [OPTIONS]
#   --dry-run      print the commands that would run, one per line, ready to paste (without the
#                  CUDA_VISIBLE_DEVICES=<gpu> a worker adds: pasted, they run on GPU 0); run nothing
#   --only REGEX   keep the jobs whose name matches REGEX (bash =~, e.g. '^CUB_.*_s0$')
#   --help         this text
# Environment:
#   GPUS       GPUs to use, one worker each (default "0"; list a GPU twice for two workers on it)
#   DATAPATH   --source_path, the parent of the dataset folders (default ../../Datasets, as main.py)
#   SAVEPATH   --save_path (default Training_Results); a job's run folder is
#              SAVEPATH/DATASET/NAME, its log SAVEPATH/logs/NAME.log (appended)
#   PYTHON     the interpreter, split into words (default python)
#
# Each worker takes the next job of a shared queue and runs it with CUDA_VISIBLE_DEVICES=<its GPU>
# and --gpu 0. A job whose folder holds training_summary.json is finished and skipped; one with
# checkpoint_last.pth resumes from it (the checkpoint keeps the options: only --n_epochs,
# --kernels/--num_workers, --device, --evaluate_on_gpu and --log_online of its flags are passed
# on, with --source_path and --gpu); a folder with neither (a run killed before its first epoch
# ended) is moved aside to NAME.incomplete-<time> and the job starts afresh. So rerunning a list
# resumes it. train_and_swipe then attacks checkpoint_last.pth (skipped when its
# CKPT.PROFILE.json exists; the run list may set SWIPE_FLAGS=(...) for eval.py) and prints its
# ERS with eval.py --ers. The list exits 1 naming the failed jobs; Ctrl-C stops every worker
# (each run writes its "interrupted" line to its log) and exits 130. Two lists must not share a
# SAVEPATH at the same time: a folder another list is just starting would be moved aside.

_LIST=$(basename "$0")
_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
_NAMES=() _DATASETS=() _PROFILES=() _FLAGS=()
declare -A _SEEN=()
SWIPE_FLAGS=()
# main.py flags the runner sets itself, from the job's NAME and DATASET and the environment
_MANAGED=" --dataset --savename --save_path --source_path --source --resume --gpu "
# main.py flags a resumed run takes from the list (utilities/run_setup.py RESUME_OVERRIDABLE)
_RESUMED_VALUES=" --n_epochs --kernels --num_workers --device "
_RESUMED_SWITCHES=" --evaluate_on_gpu --log_online "

_die() {
    printf '%s: error: %s\n' "$_LIST" "$*" >&2
    exit 2
}

_say() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*"; }

# Our dataset key of a robrank -C dataset name (checked against the job's DATASET).
robrank_dataset() {
    case $1 in
        mnist) echo mnist ;; fashion) echo fashion ;; cub) echo cub200 ;;
        cars) echo cars196 ;; sop) echo online_products ;; *) echo "$1" ;;
    esac
}

train() { _declare "$1" "$2" "" "${@:3}"; }

train_and_swipe() { _declare "$1" "$2" "$3" "${@:4}"; }

_declare() {
    local name=$1 dataset=$2 profile=$3 flag previous="" quoted=""
    shift 3
    [[ $name =~ ^[A-Za-z0-9][A-Za-z0-9._@+=-]*$ ]] ||
        _die "job name '$name': expected letters, digits and ._@+=- (it names a folder)"
    [[ $dataset =~ ^[a-z0-9_]+$ ]] || _die "job $name: dataset '$dataset' is not a dataset key"
    [[ -z ${_SEEN[$name]-} ]] || _die "job name $name declared twice"
    for flag in "$@"; do
        [[ $_MANAGED == *" ${flag%%=*} "* ]] &&
            _die "job $name: ${flag%%=*} is set by the runner (from NAME, DATASET, environment)"
        if [[ $previous == -C && $(robrank_dataset "${flag%%:*}") != "$dataset" ]]; then
            _die "job $name: -C $flag trains on $(robrank_dataset "${flag%%:*}"), not $dataset"
        fi
        previous=$flag
    done
    _SEEN[$name]=1
    _NAMES+=("$name") _DATASETS+=("$dataset") _PROFILES+=("$profile")
    (($#)) && printf -v quoted '%q ' "$@"
    _FLAGS+=("$quoted")
}

# _plan I: what job I needs now, in _ACTION (skip, resume, fresh or aside) and the commands
# _TRAIN (empty when finished), _SWIPE (empty without a profile or when its file exists), _ERS.
_plan() {
    local i=$1 flags previous="" flag
    eval "flags=(${_FLAGS[i]})"
    _DIR=$SAVEPATH/${_DATASETS[i]}/${_NAMES[i]}
    _CKPT=$_DIR/checkpoint_last.pth
    _TRAIN=() _SWIPE=() _ERS=()
    if [[ -f $_DIR/training_summary.json ]]; then
        _ACTION=skip
    elif [[ -f $_CKPT ]]; then
        _ACTION=resume
        _TRAIN=("${_PY[@]}" "$_MAIN" --resume "$_CKPT")
        for flag in "${flags[@]}"; do
            [[ $_RESUMED_VALUES == *" $previous "* ]] && _TRAIN+=("$previous" "$flag")
            [[ $_RESUMED_VALUES == *" ${flag%%=*} "* && $flag == *=* ]] && _TRAIN+=("$flag")
            [[ $_RESUMED_SWITCHES == *" $flag "* ]] && _TRAIN+=("$flag")
            previous=$flag
        done
        _TRAIN+=(--source_path "$DATAPATH" --gpu 0)
    else
        _ACTION=fresh
        [[ -e $_DIR ]] && _ACTION=aside
        _TRAIN=("${_PY[@]}" "$_MAIN" "${flags[@]}" --dataset "${_DATASETS[i]}"
            --source_path "$DATAPATH" --save_path "$SAVEPATH" --savename "${_NAMES[i]}" --gpu 0)
    fi
    if [[ -n ${_PROFILES[i]} ]]; then
        _JSON=$_CKPT.${_PROFILES[i]}.json
        [[ -f $_JSON ]] || _SWIPE=("${_PY[@]}" "$_EVAL" --test_path "$_CKPT"
            --swipe "${_PROFILES[i]}" "${SWIPE_FLAGS[@]}")
        _ERS=("${_PY[@]}" "$_EVAL" --ers "$_JSON")
    fi
}

_print_command() {
    (($#)) || return 0
    local line
    printf -v line '%q ' "$@"
    printf '%s\n' "${line% }"
    _COUNT=$((_COUNT + 1))
}

_dry_run() {
    local i
    _COUNT=0
    for i in "${_SELECTED[@]}"; do
        _plan "$i"
        case $_ACTION in
            skip) echo "# ${_NAMES[i]}: finished ($_DIR/training_summary.json)" >&2 ;;
            aside) echo "# ${_NAMES[i]}: $_DIR holds no checkpoint: it would be moved aside" >&2 ;;
        esac
        _print_command "${_TRAIN[@]}"
        _print_command "${_SWIPE[@]}"
        _print_command "${_ERS[@]}"
    done
    echo "# $_COUNT commands for ${#_SELECTED[@]} jobs; a worker adds" \
        "CUDA_VISIBLE_DEVICES=<its GPU> (GPUS=\"$GPUS\")" >&2
}

# _step GPU LOG COMMAND...: one command of a job, its output appended to LOG; its exit status.
_step() {
    local gpu=$1 log=$2
    shift 2
    local line
    printf -v line '%q ' "$@"
    printf '\n[%(%F %T)T] CUDA_VISIBLE_DEVICES=%s %s\n' -1 "$gpu" "${line% }" >>"$log"
    CUDA_VISIBLE_DEVICES=$gpu "$@" >>"$log" 2>&1 </dev/null
}

_run_job() {
    local i=$1 gpu=$2 name=${_NAMES[$1]} log status=0 started=$SECONDS aside took ers=""
    log=$SAVEPATH/logs/$name.log
    _plan "$i"
    case $_ACTION in
        resume) _say "gpu $gpu: resume $name from $_CKPT (log $log)" ;;
        fresh | aside) _say "gpu $gpu: start $name (log $log)" ;;
    esac
    if [[ $_ACTION == aside ]]; then
        aside=$_DIR.incomplete-$(date +%Y%m%d-%H%M%S)
        [[ -e $aside ]] && aside=$aside-$$
        if mv "$_DIR" "$aside"; then
            _say "moved $_DIR aside to $aside: it holds no checkpoint"
        else
            status=1
        fi
    fi
    if ((status == 0 && ${#_TRAIN[@]})); then
        _step "$gpu" "$log" "${_TRAIN[@]}" || status=$?
    fi
    if ((status == 0 && ${#_SWIPE[@]})); then
        _say "gpu $gpu: swipe $name (${_PROFILES[i]}, log $log)"
        _step "$gpu" "$log" "${_SWIPE[@]}" || status=$?
    fi
    if ((status == 0 && ${#_ERS[@]})); then
        _step "$gpu" "$log" "${_ERS[@]}" || status=$?
        ((status)) || ers="; $(tail -n 1 "$log")"
    fi
    took=$((SECONDS - started))
    if ((status == 130 || (status && ${_STOP:-0}))); then
        _say "gpu $gpu: interrupted $name (log $log)"
        echo "interrupted $name" >>"$_STATE/results"
    elif ((status)); then
        _say "gpu $gpu: FAILED $name (exit $status): $(tail -n 1 "$log" 2>/dev/null | cut -c1-200)"
        echo "failed $name" >>"$_STATE/results"
    elif [[ $_ACTION == skip && ${#_SWIPE[@]} == 0 ]]; then
        _say "skip $name: finished ($_DIR/training_summary.json)$ers"
        echo "skipped $name" >>"$_STATE/results"
    else
        _say "gpu $gpu: done $name ($((took / 60))m$((took % 60))s)$ers"
        echo "done $name" >>"$_STATE/results"
    fi
}

# A worker claims the next unclaimed job (mkdir is atomic) until none is left or it is stopped.
_worker() {
    local gpu=$1 i
    _STOP=0
    trap '_STOP=1' INT TERM
    for i in "${_SELECTED[@]}"; do
        ((_STOP)) && break
        mkdir "$_STATE/claim.$i" 2>/dev/null || continue
        _run_job "$i" "$gpu"
    done
}

# _interrupt SIGNAL: pass Ctrl-C (INT) or TERM on to every worker's process group (TERM if again).
_interrupt() {
    local pid signal=$1
    ((_INTERRUPTS++)) && signal=TERM
    _say "interrupted: stopping the workers (SIG$signal); rerun the list to resume" >&2
    for pid in "${_PIDS[@]}"; do kill -"$signal" -- "-$pid" 2>/dev/null; done
}

_run_parallel() {
    local gpu pid gpus
    read -ra gpus <<<"${GPUS//,/ }"
    ((${#gpus[@]})) || _die "GPUS is empty; expected GPU indices such as \"0 1\""
    mkdir -p "$SAVEPATH/logs" || _die "SAVEPATH: cannot create $SAVEPATH/logs"
    _STATE=$(mktemp -d) || _die "cannot create a temporary folder"
    trap 'rm -rf "$_STATE"' EXIT
    : >"$_STATE/results"
    _PIDS=() _INTERRUPTS=0
    trap '_interrupt INT' INT
    trap '_interrupt TERM' TERM
    set -m # each worker in its own process group, so Ctrl-C reaches it (and its run) only via us
    for gpu in "${gpus[@]}"; do
        ((_INTERRUPTS)) && break
        _worker "$gpu" &
        _PIDS+=($!)
    done
    set +m
    for pid in "${_PIDS[@]}"; do
        while kill -0 "$pid" 2>/dev/null; do wait "$pid"; done
    done
    trap - INT TERM
    local outcome count summary="" failed jobs=jobs
    for outcome in "done" skipped interrupted failed; do
        count=$(grep -c "^$outcome " "$_STATE/results")
        [[ $outcome == interrupted ]] && ((count == 0)) && continue
        summary+="${summary:+, }$count $outcome"
    done
    failed=$(awk '$1 == "failed" {printf " %s", $2}' "$_STATE/results")
    ((${#_SELECTED[@]} == 1)) && jobs=job
    _say "$_LIST: ${#_SELECTED[@]} $jobs: $summary${failed:+:$failed}"
    if ((_INTERRUPTS)) || grep -q '^interrupted ' "$_STATE/results"; then exit 130; fi
    [[ -z $failed ]] || exit 1
}

_usage() {
    sed -n '2,/^[^#]/{/^#/!q;s/^# \{0,1\}//p}' "$0"
    echo
    sed -n '/^# Usage:/,/^$/{/^$/q;s/^# \{0,1\}//p}' "${BASH_SOURCE[0]}"
}

run_jobs() {
    local dry=0 only="" i
    while (($#)); do
        case $1 in
            --dry-run) dry=1 ;;
            --only) (($# > 1)) || _die "--only needs a REGEX"; only=$2; shift ;;
            --only=*) only=${1#--only=} ;;
            -h | --help) _usage; exit 0 ;;
            *) _die "unknown option '$1' (expected --dry-run, --only REGEX, --help)" ;;
        esac
        shift
    done
    GPUS=${GPUS-0} DATAPATH=${DATAPATH-../../Datasets} SAVEPATH=${SAVEPATH-Training_Results}
    read -ra _PY <<<"${PYTHON-python}"
    ((${#_PY[@]})) || _die "PYTHON is empty; expected an interpreter such as python"
    _MAIN=$_ROOT/main.py _EVAL=$_ROOT/eval.py
    if [[ $_ROOT -ef $PWD ]]; then _MAIN=main.py _EVAL=eval.py; fi
    [[ x =~ $only ]]
    (($? == 2)) && _die "--only: '$only' is not a valid regular expression"
    _SELECTED=()
    for i in "${!_NAMES[@]}"; do
        [[ ${_NAMES[i]} =~ $only ]] && _SELECTED+=("$i")
    done
    ((${#_SELECTED[@]})) || _die "no job matches --only '$only' (${#_NAMES[@]} jobs declared)"
    if ((dry)); then _dry_run; else _run_parallel; fi
}
