# Written by devaipod: its shims (oc, opencode-agent) on PATH in login shells.
case ":${PATH}:" in
    *:/opt/devaipod/bin:*) ;;
    *) PATH="${PATH}:/opt/devaipod/bin"; export PATH ;;
esac
