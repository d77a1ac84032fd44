"""Dialog scripts for the reminder bot: YAML files per stage and language, every line checked by the rule engine."""

from scripts_library.load import (
    LINES,
    PLACEHOLDERS,
    Script,
    ScriptError,
    ScriptFillError,
    ScriptLine,
    bundled_script,
    bundled_scripts,
    format_value,
    load_script,
    select_script,
    to_amount,
)

__all__ = ["LINES", "PLACEHOLDERS", "Script", "ScriptError", "ScriptFillError", "ScriptLine", "bundled_script",
           "bundled_scripts", "format_value", "load_script", "select_script", "to_amount"]
