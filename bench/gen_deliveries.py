#!/usr/bin/env python3
"""Seeded generator of realistic ServiceDesk deliveries, as NDJSON import lines.

Each line is {"body": <delivery>, "headers": {"webhook-id": ...}, "received_at": ...}, ready for
`ticket-audit import FILE`, or for the load generator (which signs and sends the bodies).

Mix (by default): ~10% AddTicket, ~70% SendTicketMessage with 0-5 executed commands (and a
proposed one or two), ~20% other documented actions; bodies of about 0.5-4 KB; a share of
repeated deliveries (same webhook-id, as a retrying sender makes). Same seed, same output.

    python3 bench/gen_deliveries.py --deliveries 100000 --tickets 2000 --seed 1 > /tmp/d.ndjson
    python3 bench/gen_deliveries.py --commands 1000000 --tickets 20000 > /tmp/store.ndjson
"""
import argparse
import datetime as dt
import json
import random
import sys

TENANTS = [f"tenant-{i:02d}" for i in range(8)]
AGENTS = [("aws", "agent-aws-1"), ("k8s", "agent-k8s-1"), ("terraform", "agent-tf-1"), ("db", "agent-db-1"),
          ("linux", "agent-linux-1"), ("gcp", "agent-gcp-1")]
COMMANDS = {
    "aws": ["aws s3 ls s3://{b}", "aws s3 rm s3://{b}/tmp --recursive", "aws iam list-users", "aws ec2 describe-instances",
            "aws ec2 terminate-instances --instance-ids i-{h}", "aws sts get-caller-identity", "aws logs tail /app/{b}",
            "aws secretsmanager get-secret-value --secret-id {b}", "aws iam attach-role-policy --role-name {b}"],
    "k8s": ["kubectl get pods -n {b}", "kubectl describe pod {b}-{h}", "kubectl logs {b}-{h} --tail=200",
            "kubectl delete pod {b}-{h}", "kubectl rollout restart deployment/{b}", "kubectl get secrets -n {b}",
            "kubectl scale deployment/{b} --replicas=3", "helm upgrade {b} ./chart"],
    "terraform": ["terraform plan", "terraform apply -auto-approve", "terraform destroy -target=module.{b}",
                  "terraform state list", "terraform init"],
    "db": ["psql -c 'select count(*) from {b}'", "pg_dump {b}", "psql -c 'vacuum analyze {b}'",
           "mysql -e 'show processlist'", "psql -c 'drop table {b}_old'"],
    "linux": ["systemctl restart {b}", "journalctl -u {b} -n 100", "df -h", "rm -rf /tmp/{b}", "chmod 600 /etc/{b}.conf",
              "sudo apt-get install -y {b}", "top -b -n 1"],
    "gcp": ["gcloud compute instances list", "gcloud storage ls gs://{b}", "gcloud iam service-accounts list",
            "gcloud sql instances describe {b}"],
}
RESULTS = ["OK", "done", "AccessDenied: Access Denied", "Error from server (NotFound): pods \"{b}\" not found",
           "error: timed out waiting for the condition", "permission denied", "NAME READY STATUS\n{b}-{h} 1/1 Running",
           "{{\"Statement\":[{{\"Effect\":\"Allow\"}}]}}", "Error: exit status 1", ""]
OTHER = ["GET:Ticket/GetTicket", "GET:Ticket/GetTicketMessages", "GET:Ticket/ListTicket", "POST:Ticket/StoreNextMessageContext",
         "GET:AgentDefinition/ListAgentDefinition", "PUT:AgentDefinition/UpdateAgentDefinition", "GET:Settings/GetSettings",
         "GET:ToolDefinition/ListToolDefinition", "GET:VectorDb/ListVectorDb", "GET:ServiceDeskAgents/GetAllowedAgentInstances"]
WORDS = ("the bucket policy role access pod deployment restart error logs cluster node disk memory timeout database "
         "credentials rotate permission user instance network latency please check again thanks").split()


def text(rng, lo, hi):
    n = rng.randint(lo, hi)
    out, size = [], 0
    while size < n:
        w = rng.choice(WORDS)
        out.append(w)
        size += len(w) + 1
    return " ".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--deliveries", type=int, help="how many lines (default: until --commands is reached)")
    ap.add_argument("--commands", type=int, help="stop once this many commands (proposed and executed) were written")
    ap.add_argument("--tickets", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--duplicates", type=float, default=0.02, help="share of lines repeating an earlier delivery")
    ap.add_argument("--start", default="2026-01-01T00:00:00+00:00", help="first received_at")
    ap.add_argument("--no-times", action="store_true", help="leave received_at out (the receiver sets it)")
    args = ap.parse_args()
    if args.deliveries is None and args.commands is None:
        args.deliveries = 10000
    rng = random.Random(args.seed)
    t = dt.datetime.fromisoformat(args.start)
    tickets = [f"TICKET-{i:06d}" for i in range(args.tickets)]
    assignment = {name: (rng.choice(TENANTS), rng.choice(AGENTS)) for name in tickets}
    created = set()
    recent = []
    out = sys.stdout
    n = commands = 0
    while (args.deliveries is None or n < args.deliveries) and (args.commands is None or commands < args.commands):
        t += dt.timedelta(milliseconds=rng.randint(1, 40))
        if recent and rng.random() < args.duplicates:
            line = rng.choice(recent)
        else:
            name = rng.choice(tickets)
            tenant, (agent, agent_id) = assignment[name]
            roll = rng.random()
            if roll < 0.10 or name not in created and roll < 0.2:
                created.add(name)
                body = {"Action": "POST:Ticket/AddTicket", "Data": {"RequestBody": {"Ticket": {
                    "Name": name, "Title": text(rng, 20, 80), "CreateTime": t.isoformat().replace("+00:00", "Z"),
                    "Assignee": {"AgentName": agent, "AgentId": agent_id}, "TenantId": tenant,
                    "Status": rng.choice(["Open", "Open", "InProgress", "Resolved"])}},
                    "ResponseBody": {"Id": name, "Detail": text(rng, 200, 2500)},
                    "StatusCode": 200 if rng.random() > 0.02 else 500}}
            elif roll < 0.80:
                b, h = rng.choice(WORDS), f"{rng.getrandbits(24):06x}"
                executed = []
                for _ in range(rng.randint(0, 5)):
                    c = rng.choice(COMMANDS[agent]).format(b=b, h=h)
                    executed.append({"command": c, "result": rng.choice(RESULTS).format(b=b, h=h) + " " * rng.randint(0, 300)})
                proposed = [rng.choice(COMMANDS[agent]).format(b=b, h=h) for _ in range(rng.randint(0, 2))]
                key_cmds, key_exec = ("Cmds", "executedCmds") if rng.random() < 0.7 else ("cmds", "executed_cmds")
                commands += len(executed) + len(proposed)
                body = {"Action": "POST:Ticket/SendTicketMessage", "Data": {
                    "RequestBody": {"ticketName": name, "message": {"Content": text(rng, 30, 600)}},
                    "ResponseBody": {"Content": text(rng, 100, 1800), "data": {key_cmds: proposed, key_exec: executed}},
                    "StatusCode": 200 if rng.random() > 0.03 else 502}}
            else:
                action = rng.choice(OTHER)
                body = {"Action": action, "Data": {"RequestBody": {"ticketName": name, "Page": rng.randint(1, 9)},
                        "ResponseBody": {"Items": [text(rng, 40, 200) for _ in range(rng.randint(1, 8))]},
                        "StatusCode": rng.choice([200, 200, 200, 404])}}
            line = {"body": body, "headers": {"webhook-id": f"msg_{args.seed}_{n}"}}
            if not args.no_times:
                line["received_at"] = t.isoformat().replace("+00:00", "Z")
            line = json.dumps(line, separators=(",", ":"))
            recent.append(line)
            if len(recent) > 1000:
                recent.pop(0)
        out.write(line)
        out.write("\n")
        n += 1
    print(f"generated {n} deliveries, {commands} commands", file=sys.stderr)


if __name__ == "__main__":
    main()
