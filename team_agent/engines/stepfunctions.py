"""The ``stepfunctions`` engine: runs a task as one execution of an AWS Step Functions state machine.

Through boto3 (the AWS SDK), each call in a worker thread of the adapter's own pool: the agent
makes a handful of calls per task (start, a poll every few seconds, the history once), so a
thread per call costs nothing, and boto3 is AWS's own, maintained client with the standard
credential chain. Its own pool, not asyncio's default one: AWS calls slowed down by throttling or
an outage (up to ``timeout`` each, retried) must not hold up the agent's own thread work.

1. At agent start (building the adapter): ``DescribeStateMachine``. An unknown state machine, a
   malformed ARN, an EXPRESS one (its executions cannot be described) or credentials that may not
   read it refuse the agent's config, naming the binding and the field.
2. ``StartExecution`` named from the step's idempotency key (``execution_name_for``), with the task
   input, the agent's trace context in ``input["accord"]`` and an X-Ray ``traceHeader``. A
   re-delivered task gets ``ExecutionAlreadyExists`` and attaches to that execution (its ARN
   follows from the state machine's and the name).
3. ``DescribeExecution`` with backoff until the status is terminal.
4. ``SUCCEEDED``: the execution's output JSON; ``FAILED`` / ``TIMED_OUT`` / ``ABORTED``: a failure
   carrying the execution's ``error`` and ``cause`` (docs/engines/stepfunctions.md, "Failures").
5. Cancel: ``StopExecution``.

``with:`` keys::

    state_machine_arn: arn:aws:states:eu-west-1:123456789012:stateMachine:charge-card   # required
    region: eu-west-1                # optional: the ARN's region by default
    endpoint_url: https://...        # optional: a VPC endpoint, or a local emulator
    access_key_id: ${secret:...}     # optional, with secret_access_key (and session_token);
    secret_access_key: ${secret:...} #   without them, the standard AWS credential chain
    session_token: ${secret:...}
    profile: payments                # optional: a profile of the shared AWS config files
    context_key: accord              # the input key of the trace context; null: none
    retryable_errors: [Bank.Unavailable]   # execution errors to retry, besides the built-in ones
    poll_interval: 1s                # first poll interval; grows by 1.5x ...
    max_poll_interval: 20s           # ... up to this
    timeout: 30s                     # per API call
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import hashlib
import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, TypeVar

from opentelemetry import trace

from team_agent.engines._http_util import Backoff, ConfigReader, outgoing_trace_context
from team_agent.engines.base import EngineConfigError, EngineFailure, Handle, TaskContext

logger = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

T = TypeVar("T")

#: The default input key under which the execution gets the agent's trace context
#: ({"traceparent", "tracestate", "idempotency_key", "attempt"}).
CONTEXT_KEY = "accord"
# Execution names: 1-80 characters; AWS forbids white space, brackets, wildcards, control
# characters and " # % \ ^ | ~ ` $ & , ; : /, and CloudWatch logging wants only [A-Za-z0-9_-].
# Names made here use [A-Za-z0-9-] for the key and "_" only before a generation number.
_NAME_FORBIDDEN = re.compile(r"[^A-Za-z0-9-]")
_NAME_MAX = 80
_NAME_PREFIX = "accord-"
_HASHED_TAIL = re.compile(r"-[0-9a-f]{16}$")
_ARN = re.compile(
    r"^arn:(?P<partition>aws[a-z-]*):states:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):"
    r"stateMachine:(?P<name>[^:\s]{1,80})(?::(?P<qualifier>[^:\s]{1,80}))?$"
)
_RUNNING = ("RUNNING", "PENDING_REDRIVE")
_FAILED = ("FAILED", "TIMED_OUT", "ABORTED")
#: Execution errors worth another attempt: timeouts and the failures of the services a task
#: calls. Any other error is the state machine's deliberate answer (a Fail state, a worker's
#: named error), given after the state machine's own Retry policies ran.
RETRYABLE_ERRORS = frozenset(
    {
        "States.Timeout",
        "States.HeartbeatTimeout",
        "States.TaskFailed",
        "States.ItemReaderFailed",
        "States.ResultWriterFailed",
        "Lambda.ServiceException",
        "Lambda.AWSLambdaException",
        "Lambda.SdkClientException",
        "Lambda.TooManyRequestsException",
        "Lambda.ClientExecutionTimeoutException",
    }
)
# AWS error codes that mean "briefly unavailable, ask again".
_TRANSIENT_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "TooManyRequestsException",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "InternalFailure",
        "InternalServerError",
        "RequestTimeout",
        "RequestTimeoutException",
        "ExecutionLimitExceeded",
        "ExpiredTokenException",
    }
)
_AUTH_CODES = frozenset(
    {
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "MissingAuthenticationToken",
    }
)
_DENIED_CODES = frozenset({"AccessDeniedException", "AccessDenied", "KmsAccessDeniedException"})
_KNOWN_KEYS = {
    "state_machine_arn",
    "region",
    "endpoint_url",
    "access_key_id",
    "secret_access_key",
    "session_token",
    "profile",
    "context_key",
    "retryable_errors",
    "poll_interval",
    "max_poll_interval",
    "timeout",
}
_HISTORY_LIMIT = 1000  # events read for the states' spans
_THREADS = 16  # concurrent API calls of one binding (and botocore's connection pool)
_MESSAGE_CAUSE_MAX = 1000  # characters of an execution's error and cause in a failure's message
_DETAILS_CAUSE_MAX = 8000  # ... and in its details


@dataclass(frozen=True)
class StepFunctionsConfig:
    state_machine_arn: str
    region: str
    endpoint_url: str | None
    access_key_id: str | None
    secret_access_key: str | None
    session_token: str | None
    profile: str | None
    context_key: str | None
    retryable_errors: frozenset[str]
    poll_interval: float
    max_poll_interval: float
    timeout: float
    partition: str = "aws"
    state_machine_name: str = ""

    @classmethod
    def from_mapping(cls, config: Mapping[str, Any]) -> StepFunctionsConfig:
        r = ConfigReader("stepfunctions", config, _KNOWN_KEYS)
        arn = r.string("state_machine_arn", required=True) or ""
        match = _ARN.match(arn)
        if arn and match is None:
            r.problem(
                "state_machine_arn",
                f"must be a state machine ARN such as "
                f"arn:aws:states:eu-west-1:123456789012:stateMachine:charge-card, got {arn!r}",
            )
        region = r.string("region") or (match.group("region") if match else "")
        if match and region != match.group("region"):
            r.problem(
                "region",
                f"is {region!r} but state_machine_arn is in {match.group('region')!r}; "
                "leave region out to use the ARN's",
            )
        endpoint_url = r.string("endpoint_url")
        if endpoint_url is not None:
            if not re.match(r"^https?://[^/\s]+", endpoint_url):
                r.problem("endpoint_url", f"must be an http:// or https:// URL, got {endpoint_url!r}")
            endpoint_url = endpoint_url.rstrip("/")
        access_key_id = r.string("access_key_id")
        secret_access_key = r.string("secret_access_key")
        session_token = r.string("session_token")
        profile = r.string("profile")
        if bool(access_key_id) != bool(secret_access_key):
            r.problem(
                "access_key_id" if not access_key_id else "secret_access_key",
                "give both access_key_id and secret_access_key, or neither (the standard AWS "
                "credential chain: environment, shared files, instance or task role)",
            )
        if session_token and not access_key_id:
            r.problem("session_token", "needs access_key_id and secret_access_key")
        if profile and access_key_id:
            r.problem("profile", "give either profile or access_key_id/secret_access_key, not both")
        context_key: str | None = CONTEXT_KEY
        if "context_key" in r.config:
            raw = r.config["context_key"]
            if raw is None:
                context_key = None
            elif isinstance(raw, str) and raw:
                context_key = raw
            else:
                r.problem("context_key", f"must be a non-empty string, or null for none, got {raw!r}")
        retryable = r.config.get("retryable_errors") or []
        if not isinstance(retryable, list) or not all(isinstance(e, str) and e for e in retryable):
            r.problem("retryable_errors", "must be a list of error names such as [Bank.Unavailable]")
            retryable = []
        cfg = cls(
            state_machine_arn=arn,
            region=region,
            endpoint_url=endpoint_url,
            access_key_id=access_key_id,
            secret_access_key=secret_access_key,
            session_token=session_token,
            profile=profile,
            context_key=context_key,
            retryable_errors=RETRYABLE_ERRORS | frozenset(retryable),
            poll_interval=r.duration("poll_interval", 1.0) or 1.0,
            max_poll_interval=r.duration("max_poll_interval", 20.0) or 20.0,
            timeout=r.duration("timeout", 30.0) or 30.0,
            partition=match.group("partition") if match else "aws",
            state_machine_name=match.group("name") if match else "",
        )
        r.raise_if_problems()
        return cfg


def execution_name_for(idempotency_key: str, generation: int = 1) -> str:
    """The execution name for a step's idempotency key: ``accord-<key>``, or ``accord-<key>_<n>``
    for the execution of a later attempt (``generation`` n > 1) started after earlier ones failed.

    A key that is not all ``[A-Za-z0-9-]``, or is too long for the 80 characters, is sanitised
    (other characters become ``-``), cut, and ends in ``-`` and 16 hex digits of its SHA-256, so
    two keys never share a name; a clean key that already ends like such a hash is hashed too.
    ``_`` appears only before a generation number, so a generation never looks like a key."""
    suffix = "" if generation <= 1 else f"_{generation}"
    budget = _NAME_MAX - len(_NAME_PREFIX) - len(suffix)
    base = _NAME_FORBIDDEN.sub("-", idempotency_key)
    if base != idempotency_key or not base or len(base) > budget or _HASHED_TAIL.search(base):
        digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:16]
        base = f"{base[: budget - 17]}-{digest}"
    return f"{_NAME_PREFIX}{base}{suffix}"


def xray_trace_header(traceparent: str) -> str | None:
    """The X-Ray trace header for a W3C ``traceparent`` (the mapping of the X-Ray propagators:
    the 32 hex digits of the trace id split 8 + 24 as ``Root=1-<8>-<24>``, the parent span id as
    ``Parent``, the sampled flag as ``Sampled``); None for a malformed one."""
    parts = traceparent.strip().split("-")
    if len(parts) < 4 or len(parts[1]) != 32 or len(parts[2]) != 16 or len(parts[3]) != 2:
        return None
    trace_id, span_id, flags = parts[1].lower(), parts[2].lower(), parts[3]
    if not all(c in "0123456789abcdef" for c in trace_id + span_id) or set(trace_id) == {"0"}:
        return None
    try:
        sampled = int(flags, 16) & 1
    except ValueError:
        return None
    return f"Root=1-{trace_id[:8]}-{trace_id[8:]};Parent={span_id};Sampled={sampled}"


def _ns(value: Any) -> int | None:
    """A boto3 timestamp (an aware datetime) as ns since the epoch."""
    if isinstance(value, datetime):
        return int(value.timestamp() * 1_000_000) * 1_000
    return None


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, Mapping):
        return str((response.get("Error") or {}).get("Code") or "")
    return ""


def _error_message(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, Mapping):
        error = response.get("Error") or {}
        message = error.get("Message") or error.get("message")
        if message:
            return str(message)[:500]
    return str(exc)[:500]


class StepFunctionsEngine:
    """Engine adapter for AWS Step Functions (see the module docstring)."""

    name: ClassVar[str] = "stepfunctions"

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config = StepFunctionsConfig.from_mapping(config)
        try:
            import boto3
            import botocore.config
            import botocore.exceptions
        except ImportError as exc:  # the optional extra is not installed
            raise EngineConfigError(
                [
                    (
                        "",
                        f"stepfunctions: the AWS SDK is not installed ({exc}); install the agent "
                        "with its extra: pip install 'accord[stepfunctions]'",
                    )
                ]
            ) from exc
        self._botocore_exceptions = botocore.exceptions
        # botocore's DEBUG records carry whole requests (the task input, signed headers): an
        # agent started with --log-level debug logs the adapter's own records, not those.
        for name in ("botocore", "boto3"):
            if logging.getLogger(name).level == logging.NOTSET:
                logging.getLogger(name).setLevel(logging.INFO)
        cfg = self.config
        try:
            session = boto3.session.Session(
                aws_access_key_id=cfg.access_key_id,
                aws_secret_access_key=cfg.secret_access_key,
                aws_session_token=cfg.session_token,
                profile_name=cfg.profile,
                region_name=cfg.region,
            )
        except botocore.exceptions.ProfileNotFound as exc:
            raise EngineConfigError(
                [("profile", f"stepfunctions: {exc}; name a profile of ~/.aws/config or leave it out")]
            ) from exc
        self._client = session.client(
            "stepfunctions",
            endpoint_url=cfg.endpoint_url,
            config=botocore.config.Config(
                connect_timeout=min(cfg.timeout, 10.0),
                read_timeout=cfg.timeout,
                retries={"mode": "standard", "max_attempts": 3},
                max_pool_connections=_THREADS,
                user_agent_extra="accord-agent",
            ),
        )
        self._executor = ThreadPoolExecutor(max_workers=_THREADS, thread_name_prefix="stepfunctions")
        try:
            self._check_state_machine()
        except EngineConfigError:
            self._client.close()
            self._executor.shutdown(wait=False)
            raise

    # -- the adapter interface --------------------------------------------------------------

    async def submit(self, task: TaskContext, input: Any) -> Handle:
        cfg = self.config
        span = trace.get_current_span()
        span.set_attribute("stepfunctions.state_machine_arn", cfg.state_machine_arn)
        carrier = outgoing_trace_context(task)
        document = input
        if cfg.context_key is not None and isinstance(input, Mapping):
            context: dict[str, Any] = {"idempotency_key": task.idempotency_key, "attempt": task.attempt}
            context.update({k: v for k, v in carrier.items() if k in ("traceparent", "tracestate")})
            document = {**input, cfg.context_key: context}
        text = json.dumps(document, separators=(",", ":"))
        header = xray_trace_header(carrier.get("traceparent", ""))
        with tracer.start_as_current_span("stepfunctions.start_execution") as start_span:
            start_span.set_attribute("stepfunctions.state_machine_arn", cfg.state_machine_arn)
            execution_arn, name, attached = await self._start_or_attach(task, text, header)
            start_span.set_attribute("stepfunctions.execution_arn", execution_arn)
            start_span.set_attribute("stepfunctions.attached", attached)
        span.set_attribute("stepfunctions.execution_arn", execution_arn)
        details: dict[str, Any] = {
            "engine": "stepfunctions",
            "state_machine_arn": cfg.state_machine_arn,
            "execution_arn": execution_arn,
            "execution_name": name,
        }
        url = self.console_url(execution_arn)
        if url:
            details["console_url"] = url
        return Handle(details=details, state={"execution_arn": execution_arn, "attached": attached})

    async def wait(self, handle: Handle) -> Any:
        arn: str = handle.state["execution_arn"]
        trace.get_current_span().set_attribute("stepfunctions.execution_arn", arn)
        with tracer.start_as_current_span("stepfunctions.poll") as poll_span:
            poll_span.set_attribute("stepfunctions.execution_arn", arn)
            execution = await self._poll_until_terminal(arn, poll_span)
            status = str(execution.get("status"))
            poll_span.set_attribute("stepfunctions.status", status)
        await self._trace_execution(execution)
        if status != "SUCCEEDED":
            raise self._execution_failure(execution)
        with tracer.start_as_current_span("stepfunctions.output"):
            output = execution.get("output")
            if output is None:
                raise EngineFailure(
                    f"Step Functions execution {arn} succeeded but DescribeExecution returned no "
                    "output (outputDetails.included is false: the caller may not decrypt it?)",
                    type="OutputMissing",
                    retryable=False,
                    details=self._failure_details(execution),
                )
            try:
                return json.loads(output)
            except ValueError as exc:
                raise EngineFailure(
                    f"the output of Step Functions execution {arn} is not JSON: {exc}",
                    type="OutputNotJson",
                    retryable=False,
                    details=self._failure_details(execution),
                ) from exc

    async def cancel(self, handle: Handle) -> None:
        arn = handle.state.get("execution_arn")
        if not arn:
            return
        try:
            execution = await self._call(self._client.describe_execution, executionArn=arn)
        except EngineFailure as failure:
            if failure.type == "ExecutionDoesNotExist":
                return
            raise
        if execution.get("status") not in _RUNNING:
            return
        await self._call(
            self._client.stop_execution,
            executionArn=arn,
            error="Accord.Cancelled",
            cause="Cancelled by Accord (the task was cancelled or timed out).",
        )
        logger.info("stopped Step Functions execution", extra={"execution_arn": arn})

    async def close(self) -> None:
        await self._in_thread(self._client.close)
        self._executor.shutdown(wait=False, cancel_futures=True)

    # -- names and URLs ---------------------------------------------------------------------

    def execution_arn(self, name: str) -> str:
        """The ARN of this state machine's execution ``name`` (a version's or an alias's
        executions are named under the state machine too)."""
        match = _ARN.match(self.config.state_machine_arn)
        assert match is not None  # checked with the config
        return (
            f"arn:{match['partition']}:states:{match['region']}:{match['account']}:"
            f"execution:{match['name']}:{name}"
        )

    def console_url(self, execution_arn: str) -> str | None:
        """Where a person looks at the execution in the AWS console (none with an endpoint_url)."""
        if self.config.endpoint_url is not None or self.config.partition != "aws":
            return None
        region = self.config.region
        return f"https://{region}.console.aws.amazon.com/states/home?region={region}#/v2/executions/details/{execution_arn}"

    # -- calls ------------------------------------------------------------------------------

    async def _in_thread(self, method: Callable[..., T], **kwargs: Any) -> T:
        """``method(**kwargs)`` in the adapter's pool, in a copy of this context (its trace)."""
        context = contextvars.copy_context()
        call = functools.partial(context.run, method, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    async def _call(self, method: Callable[..., T], **kwargs: Any) -> T:
        """One API call in a worker thread (boto3 blocks); its errors as EngineFailure."""
        try:
            return await self._in_thread(method, **kwargs)
        except self._botocore_exceptions.ClientError as exc:
            raise self._client_failure(method.__name__, exc) from exc
        except self._botocore_exceptions.NoCredentialsError as exc:
            raise EngineFailure(
                f"stepfunctions: no AWS credentials: {exc}",
                type="EngineAuthError",
                retryable=False,
            ) from exc
        except self._botocore_exceptions.BotoCoreError as exc:
            where = self.config.endpoint_url or f"region {self.config.region}"
            raise EngineFailure(
                f"Step Functions at {where} could not be reached: {type(exc).__name__}: {exc}",
                type="EngineUnavailable",
                retryable=True,
            ) from exc

    def _client_failure(self, operation: str, exc: Exception) -> EngineFailure:
        code = _error_code(exc)
        message = _error_message(exc)
        text = f"Step Functions {operation} failed: {code or 'error'}: {message}"
        if code in _TRANSIENT_CODES:
            return EngineFailure(text, type="EngineUnavailable", retryable=True, details={"code": code})
        if code in _AUTH_CODES:
            return EngineFailure(text, type="EngineAuthError", retryable=False, details={"code": code})
        if code in _DENIED_CODES:
            return EngineFailure(text, type="EnginePermissionDenied", retryable=False, details={"code": code})
        status = int(
            (getattr(exc, "response", {}) or {}).get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        )
        retryable = status >= 500
        return EngineFailure(
            text,
            type=code or ("EngineUnavailable" if retryable else "EngineError"),
            retryable=retryable,
            details={"code": code, "status": status},
        )

    def _check_state_machine(self) -> None:
        """DescribeStateMachine at agent start: refuse a state machine that cannot be run."""
        cfg = self.config
        exceptions = self._botocore_exceptions
        arn = cfg.state_machine_arn
        try:
            described = self._client.describe_state_machine(stateMachineArn=arn)
        except exceptions.ClientError as exc:
            code, message = _error_code(exc), _error_message(exc)
            if code in ("StateMachineDoesNotExist", "InvalidArn", "ResourceNotFound"):
                problem = (
                    "state_machine_arn",
                    f"stepfunctions: state machine {arn} does not exist ({code}: {message}); check the "
                    "ARN (name, account and region) and the binding's region and endpoint_url",
                )
            elif code in _DENIED_CODES:
                problem = (
                    "state_machine_arn",
                    f"stepfunctions: the agent's AWS identity may not describe {arn} ({code}: {message}); "
                    "allow states:DescribeStateMachine, StartExecution, DescribeExecution, "
                    "StopExecution and GetExecutionHistory on it",
                )
            elif code in _AUTH_CODES or code == "ExpiredTokenException":
                field = "access_key_id" if cfg.access_key_id else ""
                problem = (
                    field,
                    f"stepfunctions: AWS refused the agent's credentials ({code}: {message}); check "
                    "access_key_id/secret_access_key (or the standard credential chain)",
                )
            else:
                problem = (
                    "state_machine_arn",
                    f"stepfunctions: could not describe state machine {arn} at agent start ({code}: {message})",
                )
            raise EngineConfigError([problem]) from exc
        except exceptions.NoCredentialsError as exc:
            raise EngineConfigError(
                [
                    (
                        "access_key_id",
                        "stepfunctions: no AWS credentials found: set access_key_id and "
                        "secret_access_key (from secrets), a profile, or the standard AWS chain "
                        "(environment, shared files, instance or task role)",
                    )
                ]
            ) from exc
        except exceptions.BotoCoreError as exc:
            field = "endpoint_url" if cfg.endpoint_url else "region"
            where = cfg.endpoint_url or f"region {cfg.region}"
            raise EngineConfigError(
                [
                    (
                        field,
                        f"stepfunctions: could not reach Step Functions at {where} to check "
                        f"state machine {arn}: {type(exc).__name__}: {exc}",
                    )
                ]
            ) from exc
        machine_type = described.get("type")
        if machine_type == "EXPRESS":
            raise EngineConfigError(
                [
                    (
                        "state_machine_arn",
                        f"stepfunctions: {arn} is an EXPRESS state machine: its executions cannot be "
                        "described, stopped or attached to; bind a STANDARD state machine",
                    )
                ]
            )
        if described.get("status") == "DELETING":
            raise EngineConfigError(
                [("state_machine_arn", f"stepfunctions: state machine {arn} is being deleted")]
            )

    # -- steps ------------------------------------------------------------------------------

    async def _start_or_attach(
        self, task: TaskContext, text: str, header: str | None
    ) -> tuple[str, str, bool]:
        """Start this task's execution, or attach to the one a previous delivery started.

        Executions are named ``execution_name_for(key, generation)``. One that exists and has not
        failed is this task's: attach to it (never start twice). A failed one belongs to an
        earlier attempt, so a later attempt (``task.attempt`` > generation) moves on to the next
        name."""
        generation = 1
        while True:
            name = execution_name_for(task.idempotency_key, generation)
            kwargs: dict[str, Any] = {
                "stateMachineArn": self.config.state_machine_arn,
                "name": name,
                "input": text,
            }
            if header:
                kwargs["traceHeader"] = header
            try:
                started = await self._call(self._client.start_execution, **kwargs)
            except EngineFailure as failure:
                if failure.type != "ExecutionAlreadyExists":
                    raise self._start_failure(failure) from None
            else:
                # StartExecution is idempotent for a running execution of the same name and
                # input: it answers with that execution, as if it had just started it.
                logger.info(
                    "started Step Functions execution",
                    extra={"execution_arn": started["executionArn"], "task_id": task.task_id},
                )
                return str(started["executionArn"]), name, False
            arn = self.execution_arn(name)
            existing = await self._call(self._client.describe_execution, executionArn=arn)
            status = existing.get("status")
            if status in _FAILED and generation < task.attempt:
                generation += 1
                continue
            logger.info(
                "attached to existing Step Functions execution",
                extra={"execution_arn": arn, "status": status, "task_id": task.task_id},
            )
            return arn, name, True

    def _start_failure(self, failure: EngineFailure) -> EngineFailure:
        arn = self.config.state_machine_arn
        if failure.type in ("StateMachineDoesNotExist", "StateMachineDeleting"):
            return EngineFailure(
                f"Step Functions state machine {arn} does not exist (any more): {failure.message}",
                type="StateMachineNotFound",
                retryable=False,
                details=failure.details,
            )
        if failure.type in ("InvalidExecutionInput", "ValidationException", "InvalidName"):
            return EngineFailure(
                f"Step Functions refused to start an execution of {arn}: {failure.message}",
                type=failure.type,
                retryable=False,
                details=failure.details,
            )
        return failure

    async def _poll_until_terminal(self, arn: str, span: trace.Span) -> dict[str, Any]:
        cfg = self.config
        backoff = Backoff(cfg.poll_interval, cfg.max_poll_interval)
        polls = 0
        transient_errors = 0
        while True:
            polls += 1
            span.set_attribute("stepfunctions.polls", polls)
            try:
                execution: dict[str, Any] = await self._call(
                    self._client.describe_execution, executionArn=arn
                )
                transient_errors = 0
            except EngineFailure as failure:
                # Ride out a short outage, and DescribeExecution's eventual consistency right
                # after StartExecution (ExecutionDoesNotExist); the task's timeout bounds the rest.
                transient_errors += 1
                transient = failure.retryable or failure.type == "ExecutionDoesNotExist"
                if not transient or transient_errors >= 10:
                    raise
                logger.warning("polling Step Functions failed, will retry: %s", failure.message)
                await backoff.sleep()
                continue
            if execution.get("status") not in _RUNNING:
                return execution
            await backoff.sleep()

    def _failure_details(self, execution: Mapping[str, Any]) -> dict[str, Any]:
        details: dict[str, Any] = {
            "execution_arn": execution.get("executionArn"),
            "status": execution.get("status"),
        }
        for key in ("error", "cause"):
            if execution.get(key) is not None:
                details[key] = str(execution[key])[:_DETAILS_CAUSE_MAX]
        url = self.console_url(str(execution.get("executionArn") or ""))
        if url:
            details["console_url"] = url
        return details

    def _execution_failure(self, execution: Mapping[str, Any]) -> EngineFailure:
        """The failure of a FAILED, TIMED_OUT or ABORTED execution, with its error and cause
        (docs/engines/stepfunctions.md, "Failures")."""
        arn = str(execution.get("executionArn"))
        status = str(execution.get("status"))
        error = execution.get("error")
        cause = execution.get("cause")
        said = ": ".join(str(part) for part in (error, cause) if part)
        if len(said) > _MESSAGE_CAUSE_MAX:  # a States.Runtime cause quotes the whole state input
            said = said[:_MESSAGE_CAUSE_MAX] + "... (the whole cause is in the details)"
        message = f"Step Functions execution {arn} {status}" + (f": {said}" if said else "")
        if status == "TIMED_OUT":
            kind, retryable = "ExecutionTimedOut", True
        elif status == "ABORTED":
            # Someone stopped it (StopExecution, or the console): a person's decision, not a fault.
            kind, retryable = "ExecutionAborted", False
        elif status == "FAILED" and error:
            kind, retryable = str(error), str(error) in self.config.retryable_errors
        else:
            kind, retryable = "ExecutionFailed", True
        return EngineFailure(
            message, type=kind, retryable=retryable, details=self._failure_details(execution)
        )

    async def _trace_execution(self, execution: Mapping[str, Any]) -> None:
        """Spans of the execution and of each state it entered, from its event history
        (``GetExecutionHistory``: entered/exited times, the state's type, a failed task's error),
        under the current span (the agent's engine span, inside the attempt)
        (docs/engines/stepfunctions.md, "Tracing"). Never fails the task."""
        start = _ns(execution.get("startDate"))
        if start is None:
            return
        arn = str(execution.get("executionArn") or "")
        end = _ns(execution.get("stopDate")) or time.time_ns()
        status = str(execution.get("status") or "")
        events: list[dict[str, Any]] = []
        try:
            token: str | None = None
            while len(events) < _HISTORY_LIMIT:
                kwargs: dict[str, Any] = {"executionArn": arn, "maxResults": 1000}
                if token:
                    kwargs["nextToken"] = token
                page = await self._call(self._client.get_execution_history, **kwargs)
                events.extend(page.get("events") or [])
                token = page.get("nextToken")
                if not token:
                    break
        except EngineFailure as exc:
            logger.warning("could not read the history of %s: %s", arn, exc.message)
        execution_span = tracer.start_span(
            f"stepfunctions.execution {execution.get('name') or arn.rsplit(':', 1)[-1]}",
            start_time=start,
            attributes={
                "stepfunctions.execution_arn": arn,
                "stepfunctions.state_machine_arn": self.config.state_machine_arn,
                "stepfunctions.status": status,
            },
        )
        if status != "SUCCEEDED":
            execution_span.set_status(trace.Status(trace.StatusCode.ERROR, f"execution {status}"))
        parent = trace.set_span_in_context(execution_span)
        open_states: dict[str, tuple[int, str, str | None]] = {}  # name → (start, type, error)
        for event in events[:_HISTORY_LIMIT]:
            kind = str(event.get("type") or "")
            at = _ns(event.get("timestamp"))
            if at is None:
                continue
            if kind.endswith("StateEntered"):
                name = str((event.get("stateEnteredEventDetails") or {}).get("name") or "")
                open_states[name] = (at, kind[: -len("StateEntered")], None)
            elif kind.endswith("StateExited"):
                # Exited: it succeeded, or a Retry or Catch of its own dealt with its error.
                name = str((event.get("stateExitedEventDetails") or {}).get("name") or "")
                if name in open_states:
                    begun, state_type, error = open_states.pop(name)
                    self._state_span(parent, name, state_type, begun, at, error, failed=False)
            elif kind.endswith(("Failed", "TimedOut")):
                # A task's (or the execution's) failure: charge it to the states still open.
                found = [v for k, v in event.items() if k.endswith("EventDetails") and isinstance(v, Mapping)]
                error = str((found[0] if found else {}).get("error") or kind)
                for name, (begun, state_type, _) in list(open_states.items()):
                    open_states[name] = (begun, state_type, error)
        for name, (begun, state_type, error) in open_states.items():  # entered, never exited
            self._state_span(parent, name, state_type, begun, max(end, begun), error or status, failed=True)
        execution_span.end(end_time=max(end, start))

    def _state_span(
        self,
        parent: Any,
        name: str,
        state_type: str,
        start: int,
        end: int,
        error: str | None,
        *,
        failed: bool,
    ) -> None:
        span = tracer.start_span(
            f"stepfunctions.state {name}",
            context=parent,
            start_time=start,
            attributes={"stepfunctions.state.name": name, "stepfunctions.state.type": state_type},
        )
        if error:
            span.set_attribute("stepfunctions.state.error", error)
        if failed:
            span.set_status(trace.Status(trace.StatusCode.ERROR, f"state {name}: {error}"))
        span.end(end_time=max(end, start))
