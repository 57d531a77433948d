using Google.Rpc;
using Grpc.Core;

namespace Crm.Campaigns.Tests.Infrastructure;

public static class Violations
{
    /// <summary>The INVALID_ARGUMENT's field violations (field → description).</summary>
    public static IReadOnlyDictionary<string, string> Of(RpcException e)
    {
        Assert.Equal(StatusCode.InvalidArgument, e.StatusCode);
        return e.GetRpcStatus()?.GetDetail<BadRequest>()?.FieldViolations.ToDictionary(v => v.Field, v => v.Description) ?? new Dictionary<string, string>();
    }
}
