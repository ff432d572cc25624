"""Optional EC2 GPU training host: the "train on one EC2 GPU host" path (config training_host_enabled).

A spot instance from a pinned Deep Learning AMI (``training_host_ami_id``) in a VPC without internet
access: no inbound rule, no SSH key, no public IP. Operators connect with SSM Session Manager through
interface endpoints, and reach the bucket through an S3 gateway endpoint. IMDSv2 only, KMS-encrypted root
volume, and an instance profile scoped to the project bucket's prefixes.
"""

from __future__ import annotations

from dataclasses import dataclass

import jsii
from aws_cdk import Acknowledgment, Aws, CfnOutput, RemovalPolicy, Stack, Validations
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct

from stacks.constructs.artifact_bucket import (
    CHECKPOINT_PREFIX,
    CODE_PREFIX,
    DATA_PREFIX,
    OUTPUT_PREFIX,
    WEIGHTS_PREFIX,
    ArtifactBucket,
)

# Session Manager's agent channel; these actions have no resource-level permissions
# (https://docs.aws.amazon.com/systems-manager/latest/userguide/getting-started-create-iam-instance-profile.html).
SESSION_MANAGER_ACTIONS = (
    "ssm:UpdateInstanceInformation",
    "ssmmessages:CreateControlChannel",
    "ssmmessages:CreateDataChannel",
    "ssmmessages:OpenControlChannel",
    "ssmmessages:OpenDataChannel",
    "ec2messages:AcknowledgeMessage",
    "ec2messages:DeleteMessage",
    "ec2messages:FailMessage",
    "ec2messages:GetEndpoint",
    "ec2messages:GetMessages",
    "ec2messages:SendReply",
)
SESSION_MANAGER_REASON = (
    "The SSM agent's Session Manager actions (ssm:UpdateInstanceInformation, ssmmessages:*Channel, "
    "ec2messages:*) have no resource-level permissions; AWS documents them on '*'."
)


@jsii.implements(ec2.IMachineImage)
class PinnedLinuxImage:
    """One AMI id, the same in every region the template is deployed to.

    Not ``MachineImage.from_ssm_parameter``: CloudFormation resolves the parameter on every deploy, so each
    DLAMI release would replace the host (and delete its volume) on the next unrelated deploy. Not
    ``MachineImage.generic_linux``: its per-region map would have to list in cdk.json every region a stage
    might deploy to. AMI ids are regional: the pinned id is the one of the region the stage deploys to.
    """

    def __init__(self, image_id: str) -> None:
        self._image_id = image_id

    def get_image(self, scope: Construct) -> ec2.MachineImageConfig:
        return ec2.MachineImageConfig(
            image_id=self._image_id,
            os_type=ec2.OperatingSystemType.LINUX,
            user_data=ec2.UserData.for_linux(),
        )


@dataclass(frozen=True)
class TrainingHostProps:
    stage: str
    # training_host_instance_type, training_host_ami_id (pinned: PinnedLinuxImage), training_host_volume_gb.
    instance_type: str
    ami_id: str
    volume_gb: int


class GpuTrainingHost(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        props: TrainingHostProps,
        artifacts: ArtifactBucket,
        key: kms.IKey,
    ) -> None:
        super().__init__(scope, construct_id)
        flow_logs = logs.LogGroup(
            self,
            "FlowLogs",
            retention=logs.RetentionDays.ONE_MONTH,
            encryption_key=key,
            removal_policy=RemovalPolicy.DESTROY,
        )
        # Only this account's flow logs may have the service assume the role (confused deputy), as the VPC
        # guide recommends (https://docs.aws.amazon.com/vpc/latest/userguide/flow-logs-iam-role.html).
        flow_logs_role = iam.Role(
            self,
            "FlowLogsRole",
            assumed_by=iam.ServicePrincipal(
                "vpc-flow-logs.amazonaws.com",
                conditions={
                    "StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID},
                    "ArnLike": {
                        "aws:SourceArn": (
                            f"arn:{Aws.PARTITION}:ec2:{Aws.REGION}:{Aws.ACCOUNT_ID}:vpc-flow-log/*"
                        )
                    },
                },
            ),
        )
        iam.ManagedPolicy(
            self,
            "FlowLogsPolicy",
            roles=[flow_logs_role],
            statements=[
                iam.PolicyStatement(
                    actions=["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
                    resources=[flow_logs.log_group_arn],
                )
            ],
        )
        vpc = ec2.Vpc(
            self,
            "Vpc",
            max_azs=2,
            nat_gateways=0,
            subnet_configuration=[
                ec2.SubnetConfiguration(
                    name="training", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED, cidr_mask=24
                )
            ],
            gateway_endpoints={
                "S3": ec2.GatewayVpcEndpointOptions(service=ec2.GatewayVpcEndpointAwsService.S3)
            },
            flow_logs={
                "All": ec2.FlowLogOptions(
                    destination=ec2.FlowLogDestination.to_cloud_watch_logs(
                        flow_logs, flow_logs_role.without_policy_updates()
                    ),
                    traffic_type=ec2.FlowLogTrafficType.ALL,
                )
            },
            # Closing the default SG needs a custom-resource Lambda with an AWS managed policy; nothing here
            # uses the default SG (see the acknowledgement below).
            restrict_default_security_group=False,
        )
        Validations.of(vpc).acknowledge(
            Acknowledgment(
                id="NIST.800.53.R5-VPCDefaultSecurityGroupClosed",
                reason="No resource in this VPC is attached to the default security group (the host and the "
                "endpoints have their own); closing it would need a custom-resource Lambda with an AWS "
                "managed policy, which this project does not deploy.",
            )
        )
        security_group = ec2.SecurityGroup(
            self,
            "SecurityGroup",
            vpc=vpc,
            description="dogbreed training host: no inbound; HTTPS out (isolated subnets: endpoints only)",
            allow_all_outbound=False,
        )
        # The subnets have no route to the internet: HTTPS out reaches only the interface endpoints and,
        # through the gateway endpoint's route, S3. (The S3 prefix-list id is per region: no offline lookup.)
        security_group.add_egress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(443), "VPC endpoints and S3 only")
        endpoint_group = ec2.SecurityGroup(
            self,
            "EndpointSecurityGroup",
            vpc=vpc,
            description="dogbreed training host: Session Manager endpoints, HTTPS from the host only",
            allow_all_outbound=False,
        )
        endpoint_group.add_ingress_rule(security_group, ec2.Port.tcp(443), "training host")
        for service_id, service in (
            ("Ssm", ec2.InterfaceVpcEndpointAwsService.SSM),
            ("SsmMessages", ec2.InterfaceVpcEndpointAwsService.SSM_MESSAGES),
            ("Ec2Messages", ec2.InterfaceVpcEndpointAwsService.EC2_MESSAGES),
        ):
            vpc.add_interface_endpoint(
                service_id,
                service=service,
                private_dns_enabled=True,
                security_groups=[endpoint_group],
                open=False,
            )

        role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("ec2.amazonaws.com"),
            description=f"dogbreed {props.stage}: EC2 GPU training host",
        )
        policy = iam.ManagedPolicy(
            self,
            "Policy",
            roles=[role],
            statements=[
                *artifacts.training_statements(),
                iam.PolicyStatement(
                    sid="UseProjectKeyThroughS3",
                    actions=["kms:Decrypt", "kms:GenerateDataKey"],
                    resources=[key.key_arn],
                    conditions={"StringEquals": {"kms:ViaService": f"s3.{Aws.REGION}.amazonaws.com"}},
                ),
                iam.PolicyStatement(
                    sid="SessionManager", actions=list(SESSION_MANAGER_ACTIONS), resources=["*"]
                ),
            ],
        )
        Validations.of(policy).acknowledge(
            Acknowledgment(id="AwsSolutions-IAM5[Resource::*]", reason=SESSION_MANAGER_REASON),
            *(
                Acknowledgment(
                    id=f"AwsSolutions-IAM5[Resource::{artifacts.nag_arn(prefix)}*]",
                    reason="Training reads and writes many objects of changing names under this prefix.",
                )
                for prefix in (DATA_PREFIX, CHECKPOINT_PREFIX, CODE_PREFIX, WEIGHTS_PREFIX, OUTPUT_PREFIX)
            ),
        )

        # AWS::EC2::Instance has no market option of its own: spot comes from a launch template. A one-time
        # request, terminated on interruption: a *persistent* request outlives its instance (EC2 reopens it
        # when the instance is terminated, so `cdk destroy` or an instance replacement would leave a request
        # behind that keeps launching GPU instances outside CloudFormation), and "stop on interruption"
        # requires a persistent request. Work survives an interruption through the S3 checkpoints.
        spot = ec2.LaunchTemplate(
            self,
            "Spot",
            spot_options=ec2.LaunchTemplateSpotOptions(
                request_type=ec2.SpotRequestType.ONE_TIME,
                interruption_behavior=ec2.SpotInstanceInterruption.TERMINATE,
            ),
            require_imdsv2=True,
        )
        self.instance = ec2.Instance(
            self,
            "Host",
            vpc=vpc,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED),
            instance_type=ec2.InstanceType(props.instance_type),
            machine_image=PinnedLinuxImage(props.ami_id),
            role=role,
            security_group=security_group,
            # IMDSv2 (HttpTokens=required) comes with the launch template below: an instance built from a
            # launch template takes its metadata options from there.
            detailed_monitoring=True,
            ebs_optimized=True,
            block_devices=[
                ec2.BlockDevice(
                    device_name="/dev/sda1",
                    volume=ec2.BlockDeviceVolume.ebs(
                        props.volume_gb,
                        encrypted=True,
                        kms_key=key,
                        volume_type=ec2.EbsDeviceVolumeType.GP3,
                        delete_on_termination=True,
                    ),
                )
            ],
        )
        self.instance.node.add_dependency(policy)
        cfn_instance: ec2.CfnInstance = self.instance.node.default_child
        cfn_instance.launch_template = ec2.CfnInstance.LaunchTemplateSpecificationProperty(
            launch_template_id=spot.launch_template_id, version=spot.latest_version_number
        )
        Validations.of(self.instance).acknowledge(
            Acknowledgment(
                id="AwsSolutions-EC29",
                reason="Spot instances cannot have termination protection; the host is disposable and its "
                "work is checkpointed to S3.",
            ),
            Acknowledgment(
                id="CloudFormation-Validate::W9010",
                reason="The AMI id is pinned on purpose (training_host_ami_id, see PinnedLinuxImage): an SSM "
                "parameter would replace the host at every DLAMI release.",
            ),
        )
        CfnOutput(
            Stack.of(self),
            "TrainingHostId",
            value=self.instance.instance_id,
            description="aws ssm start-session --target",
        )
