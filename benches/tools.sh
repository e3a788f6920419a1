# Sourced by the benchmark scripts. `need_tools TOOL...` installs the Debian packages of the
# tools that are missing (`time` means GNU time at /usr/bin/time, not the shell keyword;
# `borg` comes in the package `borgbackup`).
need_tools() {
    local missing=()
    for tool in "$@"; do
        case "$tool" in
            time) [ -x /usr/bin/time ] || missing+=(time) ;;
            borg) command -v borg >/dev/null 2>&1 || missing+=(borgbackup) ;;
            *) command -v "$tool" >/dev/null 2>&1 || missing+=("$tool") ;;
        esac
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
    fi
}
