"""Serving: the console with the media endpoints and adapters, and the local softphone."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from types import ModuleType
from typing import Any

import click
from aiohttp import web

from compliance_rules.pack import load_pack
from voicebot.adapters.replay import follow_events
from voicebot.call import CallBoard, CallInfo, Engines
from voicebot.cli.base import (
    cli_errors,
    db_option,
    load_engines,
    main,
    print_event,
    zone_info,
)
from voicebot.config import Config, ServeConfig, media_token
from voicebot.sql import Target
from voicebot.tts import TtsEngineMissingError
from voicebot.web.app import create_app


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address of the console and media endpoints.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option("--pack", "pack_names", multiple=True, default=("cn-collection",), show_default=True,
              help="Bundled pack or YAML file; repeat for calls in other languages, one pack per language "
                   "(the first is for calls that name no language).")
@click.option("--mode", type=click.Choice(["in-path", "tap"]), default="in-path", show_default=True,
              help="in-path: we mute and hang up; tap: we alert and ask the PBX to act.")
@click.option("--audiosocket-port", type=click.IntRange(1, 65535), help="Listen for Asterisk AudioSocket.")
@click.option("--audiosocket-host", default="127.0.0.1", show_default=True, help="Address AudioSocket listens on.")
@click.option("--audiosocket-peer", "audiosocket_peers", multiple=True, metavar="IP",
              help="An address Asterisk connects from (repeat for several); none: loopback peers only.")
@click.option("--sip-listen", metavar="HOST:PORT", help="Run the SIP user agent on this address.")
@click.option("--sip-forward", metavar="URI", help="Bridge SIP calls in-path to this URI ({user} = called user).")
@click.option("--tz", "zones", multiple=True, help="Debtor time zone when a call carries none.")
@click.option("--pbx-webhook", metavar="URL", help="Tap mode: POST actions here, signed with the media token.")
@click.option("--rules-only", is_flag=True, help="Supervise with the pack's rules alone, without the semantic model.")
@click.option("--max-calls", type=click.IntRange(0, 10000), default=0, show_default=True,
              help="Calls at once, every adapter together; more are refused at once (0: as measured per core).")
@click.option("--idle-timeout", "idle_timeout_s", type=click.FloatRange(1, 3600), default=30.0, show_default=True,
              help="End a call whose legs bring no media for this many seconds.")
@click.option("--trusted-proxy", "trusted_proxies", multiple=True, metavar="IP",
              help="A reverse proxy (address or network) whose X-Forwarded-For/-Proto headers are believed "
                   "(repeat for several); none: such headers are ignored.")
@click.option("--https", is_flag=True, help="The console is reached over HTTPS (e.g. TLS ends at a proxy that "
                                           "sends no X-Forwarded-Proto): Secure cookies and HSTS.")
@click.option("--audit-key", type=click.Path(dir_okay=False, path_type=Path),
              help="With a shared --db: the audit key file, the same on every node (default: <data folder>/audit.key).")
@click.option("--node", default="", help="This node's name among the nodes sharing --db (default: host:port).")
@click.option("--recordings", "recordings_dir", type=click.Path(file_okay=False, path_type=Path),
              help="The recordings' folder; with a shared --db, a folder every node reaches "
                   "(default: <data folder>/recordings).")
@db_option
@click.pass_obj
@cli_errors
def serve(config: Config, host: str, port: int, pack_names: tuple[str, ...], mode: str, audiosocket_port: int | None,
          audiosocket_host: str, audiosocket_peers: tuple[str, ...], sip_listen: str | None,
          sip_forward: str | None, zones: tuple[str, ...], pbx_webhook: str | None,
          rules_only: bool, max_calls: int, idle_timeout_s: float, trusted_proxies: tuple[str, ...], https: bool,
          audit_key: Path | None, node: str, recordings_dir: Path | None, db_path: Path | str | None) -> None:
    """Run the supervisor console, the media endpoints and the telephony adapters."""
    languages = [load_pack(name).language for name in pack_names]
    if len(set(languages)) < len(languages):
        raise click.BadParameter("give one pack per language", param_hint="--pack")
    settings = ServeConfig(db=db_path or config.data_dir / "voicebot.db", media_token=media_token(config.data_dir),
                           host=host, port=port, pack=pack_names[0], other_packs=pack_names[1:], mode=mode,
                           audiosocket_port=audiosocket_port, audiosocket_host=audiosocket_host,
                           audiosocket_peers=audiosocket_peers,
                           sip_listen=sip_listen, sip_forward=sip_forward, zones=zones, pbx_webhook=pbx_webhook,
                           semantic_model=not rules_only, max_calls=max_calls, idle_timeout_s=idle_timeout_s,
                           trusted_proxies=trusted_proxies, https=https, audit_key=audit_key,
                           node=node or f"{host}:{port}", recordings_dir=recordings_dir)
    try:
        web.run_app(create_app(config, settings), host=host, port=port, print=lambda line: click.echo(line, err=True))
    except TtsEngineMissingError as e:  # an OSError too, but no port is at fault
        raise click.ClickException(str(e)) from e
    except OSError as e:
        raise click.ClickException(f"cannot listen ({e.strerror or type(e).__name__}); choose other ports or stop "
                                   "what listens there") from e


@main.command()
@click.option("--agent-input", metavar="DEV", help="The agent's headset microphone, by number or name "
              "(default: the system's default input).")
@click.option("--agent-output", metavar="DEV", help="The agent's headset (default: the system's default output).")
@click.option("--customer-input", metavar="DEV", help="The customer's line into the desk (desk phone line, USB "
              "telephone adapter, a virtual source).")
@click.option("--customer-output", metavar="DEV", help="The line back to the customer.")
@click.option("--pack", "pack_name", default="cn-collection", show_default=True, help="Bundled pack or YAML file.")
@click.option("--tz", "zones", multiple=True, help="IANA zone of the debtor (repeat when sources conflict).")
@click.option("--agent-id", help="Who sits at the desk, for the audit log.")
@click.option("--list-devices", is_flag=True, help="List the sound devices and exit.")
@click.option("--model", type=click.Path(file_okay=False, path_type=Path), help="Vosk model folder.")
@db_option
@click.pass_obj
@cli_errors
def softphone(config: Config, agent_input: str | None, agent_output: str | None, customer_input: str | None,
              customer_output: str | None, pack_name: str, zones: tuple[str, ...], agent_id: str | None,
              list_devices: bool, model: Path | None, db_path: Target | None) -> None:
    """Bridge the agent's headset and the customer's line at a desk, supervised in-path; one JSON line per event."""
    desk = _softphone_adapter()
    if list_devices:
        click.echo(desk.list_devices())
        return
    for zone in zones:
        zone_info(zone)
    devices = desk.DeskDevices(agent_input=desk.parse_device(agent_input), agent_output=desk.parse_device(agent_output),
                               customer_input=desk.parse_device(customer_input),
                               customer_output=desk.parse_device(customer_output))
    try:
        phone = desk.Softphone(devices)
        engines = load_engines(config, pack_name, db_path, model)
        asyncio.run(_bridge(phone, engines, CallInfo(adapter="softphone", zones=zones, agent_id=agent_id)))
    except desk.SoundDeviceError as e:
        raise click.ClickException(str(e)) from e


def _softphone_adapter() -> ModuleType:
    """The softphone adapter, imported when used: importing sounddevice starts PortAudio."""
    try:
        from voicebot.adapters import softphone
    except OSError as e:  # sounddevice's import fails this way without the PortAudio library
        raise click.ClickException("the PortAudio library is missing; install the Debian package libportaudio2: "
                                   "sudo apt-get install -y libportaudio2") from e
    return softphone


async def _bridge(phone: Any, engines: Engines, info: CallInfo) -> None:
    """Run the desk bridge until hang-up, a lost device or Ctrl-C, printing each event."""
    board = CallBoard()
    events = board.listen(maxsize=0)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, phone.stop, "the agent left the desk")
    await follow_events(events, asyncio.create_task(phone.run(engines, board, info)), print_event)


