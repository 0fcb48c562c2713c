"""Issue 21's CPU campaign: a dense teacher per seed, then every contender fine-tuned from it with one recipe.

The state lives in one folder (committed to the repository between working stretches): `campaign.json` (the
protocol, fixed when the campaign starts), `static-choice-sN.json` (which blocks the static baselines remove)
and `runs/NAME/` (cosinegate train run folders). A run in progress keeps last.pt and best.pt, so cosinegate train
--resume continues it bit-exact; a finished run keeps its summary, metrics, curves and a model-only last.pt.

    plan           the protocol and the runs it plans (who trains what, in which order)
    state          a run folder's state (new, partial, done), its epochs, its compaction once finished
    static_choice  which blocks the static baselines remove
    schedule       train the planned runs in subprocesses until done or the deadline
    report         results, goals and hours left from the state; the leading run's deployment check
    chunk          one working stretch: train (or check the leading run), then regenerate every campaign's results
"""

from cosinegate.research.cpu_campaign.plan import PROTOCOL, RESNET56_PROTOCOL, Run, load_protocol, plan, teacher_config
from cosinegate.research.cpu_campaign.report import (WINNER_CHECK, check_winner, deploy_status, first_epoch_seconds, goals,
                                                     hours_left_line, progress, reference_goal, shared_wall_hours,
                                                     wall_hours, write_report)
from cosinegate.research.cpu_campaign.schedule import Result, continue_campaign
from cosinegate.research.cpu_campaign.state import run_state
from cosinegate.research.cpu_campaign.chunk import CAMPAIGNS, Chunk, run_chunk

__all__ = ["CAMPAIGNS", "PROTOCOL", "RESNET56_PROTOCOL", "WINNER_CHECK", "Chunk", "Result", "Run", "check_winner",
           "continue_campaign", "deploy_status", "first_epoch_seconds", "goals", "hours_left_line", "load_protocol", "plan", "progress",
           "reference_goal", "run_chunk", "run_state", "shared_wall_hours", "teacher_config", "wall_hours", "write_report"]
