using Crm.BuildingBlocks.Data;
using Crm.Contacts.Features.Workspaces;
using Crm.Contacts.V1;
using Npgsql;

namespace Crm.Contacts.Features;

/// <summary>
/// crm.contacts.v1.ContactsService. One partial file per capability folder
/// (Contacts/, Consent/, Transactions/, Engagement/, Import/), each with its mapping, handler and SQL.
/// </summary>
public sealed partial class ContactsGrpcService : ContactsService.ContactsServiceBase
{
    private readonly TenantDb _db;
    private readonly Workspaces.Workspaces _workspaces;
    private readonly Imports.ImportSlots _importSlots;
    private readonly Imports.TableStatistics _statistics;
    private readonly Suppressions.SuppressionKey _suppressions;
    private readonly ILogger<ContactsGrpcService> _logger;

    public ContactsGrpcService(TenantDb db, Workspaces.Workspaces workspaces, Imports.ImportSlots importSlots,
        Imports.TableStatistics statistics, Suppressions.SuppressionKey suppressions, ILogger<ContactsGrpcService> logger)
    {
        _db = db;
        _workspaces = workspaces;
        _importSlots = importSlots;
        _statistics = statistics;
        _suppressions = suppressions;
        _logger = logger;
    }
}
